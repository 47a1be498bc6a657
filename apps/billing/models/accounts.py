from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class PaymentTerms(models.TextChoices):
    CARD = "card", "Card on file"
    PREPAID = "prepaid", "Prepaid credits only"
    INVOICE = "invoice", "Invoice terms (pays by bank transfer)"


class PaymentStanding(models.TextChoices):
    """Where an account stands after a failed payment. Paying restores GOOD from any state."""

    GOOD = "good", "In good standing"
    GRACE = "grace", "Payment failed: grace period"
    BLOCKED = "blocked", "Payment overdue: new launches blocked"
    SUSPENDED = "suspended", "Payment overdue: running instances stopped"


class BillingAccount(models.Model):
    """An organization's billing identity: its Stripe customer, terms and payment standing."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, primary_key=True, related_name="billing_account"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    terms = models.CharField(max_length=16, choices=PaymentTerms.choices, default=PaymentTerms.CARD)
    standing = models.CharField(max_length=16, choices=PaymentStanding.choices, default=PaymentStanding.GOOD)
    standing_changed_at = models.DateTimeField(default=timezone.now)
    past_due_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"billing account of {self.organization_id}"


class BillingEvent(models.Model):
    """What happened to an account's billing: standing changes, notices sent, cap actions."""

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=500)
    from_standing = models.CharField(max_length=16, choices=PaymentStanding.choices, blank=True)
    to_standing = models.CharField(max_length=16, choices=PaymentStanding.choices, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class PaymentMethod(models.Model):
    """A card saved at Stripe. We keep only what we show: brand, last 4, expiry."""

    account = models.ForeignKey(BillingAccount, on_delete=models.CASCADE, related_name="payment_methods")
    stripe_payment_method_id = models.CharField(max_length=255, unique=True)
    brand = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(is_default=True, detached_at__isnull=True),
                name="payment_method_one_default_per_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4} ({self.exp_month:02d}/{self.exp_year})"
