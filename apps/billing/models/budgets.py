from __future__ import annotations

from django.db import models
from django.utils import timezone


class Budget(models.Model):
    """A monthly budget for an organization (project empty) or one project. Alerts go out at the
    configured percentages; with a hard cap, reaching 100 % blocks launches and, after a warning,
    stops what runs."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="budgets")
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    monthly_amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    hard_cap = models.BooleanField(default=False)
    is_default = models.BooleanField(default=False, help_text="the cap a new self-serve account starts with")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "project"], nulls_distinct=False, name="budget_one_per_scope"
            ),
            models.CheckConstraint(condition=models.Q(monthly_amount__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"budget {self.monthly_amount} {self.currency} of {self.organization_id}/{self.project_id or 'all'}"


class BudgetAlert(models.Model):
    """An alert (or cap action) already sent for a budget in one month: sent at most once."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    month = models.DateField(help_text="first day of the month")
    # 50 / 80 / 100 for alerts; "cap_warning" and "cap_stop" for the hard cap's actions.
    threshold = models.CharField(max_length=16)
    spend = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "month", "threshold"], name="budget_alert_once_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.threshold} alert for {self.month:%Y-%m}"
