from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CreditKind(models.TextChoices):
    PROMOTION = "promotion", "Promotion"
    GRANT = "grant", "Grant (e.g. university)"
    TOPUP = "topup", "Top-up by card"
    ADJUSTMENT = "adjustment", "Adjustment"


class CreditGrant(models.Model):
    """Money an organization may spend before its card is charged. What is left is the amount less
    its applications; grants are applied soonest-expiring first."""

    account = models.ForeignKey("billing.BillingAccount", on_delete=models.PROTECT, related_name="credit_grants")
    kind = models.CharField(max_length=16, choices=CreditKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=300)
    expires_at = models.DateTimeField(null=True, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["expires_at", "created_at", "id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"


class CreditApplication(models.Model):
    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="applications")
    invoice = models.ForeignKey("billing.Invoice", on_delete=models.CASCADE, related_name="credit_applications")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["grant", "invoice"], name="credit_applied_once_per_invoice"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_application_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} of grant {self.grant_id} on invoice {self.invoice_id}"
