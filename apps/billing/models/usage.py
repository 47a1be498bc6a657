from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class InstancePrice(models.Model):
    """The flavor's price, captured when the instance was launched (or started again): what its
    runs are charged, whatever the list price does afterwards."""

    instance = models.OneToOneField(
        "instances.Instance", on_delete=models.CASCADE, primary_key=True, related_name="billing_price"
    )
    price = models.ForeignKey("catalog.Price", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3)
    captured_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.hourly_amount} {self.currency}/h for {self.instance_id}"


class RunEndReason(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    LOST = "lost", "Node lost"


class MeteredRun(models.Model):
    """One agent-confirmed running interval of an instance: from the moment its workload answered
    until it was stopped, failed or lost. Billing never counts time outside such a run."""

    instance = models.ForeignKey("instances.Instance", on_delete=models.PROTECT, related_name="metered_runs")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="+")
    flavor = models.ForeignKey("catalog.Flavor", on_delete=models.PROTECT, related_name="+")
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=RunEndReason.choices, blank=True)
    # Whole seconds since started_at already written as usage records.
    metered_seconds = models.BigIntegerField(default=0)
    # Why its price is what it is, when that is not the flavor's list price: "In reservation <id>"
    # (the reservation's charge pays for the window, so the run costs 0). Copied onto its records.
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=Q(ended_at__isnull=True), name="metered_run_one_open_per_instance"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="metered_run_ends_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["ended_at"], condition=Q(ended_at__isnull=True), name="metered_run_open_idx"),
            models.Index(fields=["organization", "started_at"]),
        ]

    def __str__(self) -> str:
        return f"run of {self.instance_id} from {self.started_at:%Y-%m-%d %H:%M:%S}"


class UsageKind(models.TextChoices):
    USAGE = "usage", "Usage"
    CORRECTION = "correction", "Correction"


class UsageRecord(models.Model):
    """Seconds of one run at one unit price. Never updated or deleted (a database trigger refuses
    it): a mistake is corrected by a new record, with negative seconds if time must come off."""

    run = models.ForeignKey(MeteredRun, on_delete=models.PROTECT, related_name="records")
    instance = models.ForeignKey("instances.Instance", on_delete=models.PROTECT, related_name="+")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=UsageKind.choices, default=UsageKind.USAGE)
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections")
    reason = models.CharField(max_length=500, blank=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    seconds = models.BigIntegerField()
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "period_end"]),
            models.Index(fields=["project", "period_end"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="correction") | Q(seconds__gte=0),
                name="usage_record_seconds_positive_unless_correction",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.seconds} s of {self.instance_id} at {self.hourly_amount}/h"
