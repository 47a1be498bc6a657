from __future__ import annotations

from django.db import models
from django.utils import timezone


class InvoiceKind(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    THRESHOLD = "threshold", "Threshold"


class InvoiceLineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    CREDIT = "credit", "Credits applied"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"  # lines computed here, not yet at Stripe (or only partly)
    OPEN = "open", "Open"  # finalized at Stripe, payment under way
    PAID = "paid", "Paid"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    VOID = "void", "Void"


class Invoice(models.Model):
    account = models.ForeignKey("billing.BillingAccount", on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=16, choices=InvoiceKind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    credits_applied = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=0, help_text="charged to the card")
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    status_changed_at = models.DateTimeField(default=timezone.now)
    stripe_invoice_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # Every Stripe call for this invoice derives its Idempotency-Key from this, so a retry after
    # an outage repeats the same requests and Stripe answers them without a second effect.
    idempotency_key = models.CharField(max_length=64, unique=True)
    push_attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_end", "-id"]
        indexes = [models.Index(fields=["account", "-period_end"]), models.Index(fields=["status"])]
        constraints = [
            # Two invoice runs racing (two beats, a retry) can never bill one account twice for a month.
            models.UniqueConstraint(
                fields=["account", "period_start"],
                condition=models.Q(kind="monthly"),
                name="invoice_one_monthly_per_account_period",
            ),
            models.CheckConstraint(
                condition=models.Q(total=models.F("subtotal") - models.F("credits_applied")),
                name="invoice_total_is_subtotal_less_credits",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    """One instance at one unit price over the invoice's period (or a credit line)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=16, choices=InvoiceLineKind.choices, default=InvoiceLineKind.USAGE)
    instance = models.ForeignKey(
        "instances.Instance", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    project = models.ForeignKey("accounts.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=300)
    flavor_name = models.CharField(max_length=120, blank=True)
    seconds = models.BigIntegerField(default=0)
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    stripe_invoice_item_id = models.CharField(max_length=255, unique=True, null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class InvoicedUsage(models.Model):
    """Which line billed a usage record. One row per record: the database refuses to bill a record
    twice, and the record itself stays untouched."""

    record = models.OneToOneField("billing.UsageRecord", on_delete=models.PROTECT, primary_key=True, related_name="+")
    line = models.ForeignKey(InvoiceLine, on_delete=models.CASCADE, related_name="usage")

    def __str__(self) -> str:
        return f"record {self.record_id} on line {self.line_id}"
