"""The chargeback's stored grain: one row per hour (and per day) of one instance, or one
reservation, at one unit price. Kept incrementally by the roll-up job (services.rollup) from
billing's usage records and reservation charges, and from capacity's per-minute GPU telemetry;
no page or export reads raw records or telemetry.

Exact by construction: only integers are summed (seconds, milli-GPU-seconds). Money is derived
when read, with the invoice's own rule: per (instance or reservation, unit price) over the range,
seconds × price rounded once to the cent (apps.billing.money). So a month's groups add up to the
month's invoice lines to the cent, whatever the grouping, since every dimension is a property of
an instance or a reservation.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

# Whose usage a row is: an instance's or a reservation's, never both.
_ONE_SUBJECT = Q(instance__isnull=False, reservation__isnull=True) | Q(instance__isnull=True, reservation__isnull=False)


class UsageRollup(models.Model):
    """Fields both grains share. `instance` xor `reservation` says whose usage it is."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="+")
    # The instance's owner, or who booked the reservation (null if that account is gone).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instance = models.ForeignKey(
        "instances.Instance", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reservation = models.ForeignKey(
        "capacity.Reservation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    offering = models.ForeignKey("catalog.Offering", on_delete=models.PROTECT, related_name="+")
    flavor = models.ForeignKey("catalog.Flavor", on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3)
    # Billed seconds, corrections included (a correction may take seconds off).
    seconds = models.BigIntegerField(default=0)
    # GPUs held while billed, in thousandths of a GPU × seconds: a whole GPU for an hour is
    # 3,600,000; a MIG 1g slice or a fraction counts by its share (the allocation's gpu_milli).
    allocated_milli_seconds = models.BigIntegerField(default=0)
    # Of those, what NVML utilisation says was used: Σ over the held GPUs' minutes of
    # utilisation % × share × 60 s. Filled once the hour is over (telemetry arrives per minute).
    used_milli_seconds = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageHour(UsageRollup):
    hour = models.DateTimeField(help_text="start of the UTC hour")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "instance", "hourly_amount"],
                condition=Q(instance__isnull=False),
                name="usage_hour_one_per_instance_price",
            ),
            models.UniqueConstraint(
                fields=["hour", "reservation", "hourly_amount"],
                condition=Q(reservation__isnull=False),
                name="usage_hour_one_per_reservation_price",
            ),
            models.CheckConstraint(
                condition=_ONE_SUBJECT,
                name="usage_hour_instance_xor_reservation",
            ),
        ]
        indexes = [models.Index(fields=["organization", "hour"]), models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.seconds} s of {self.instance_id or self.reservation_id} in {self.hour:%Y-%m-%d %H:00}"


class UsageDay(UsageRollup):
    """The hours of one UTC day added up: what long ranges (a quarter, a year) read."""

    day = models.DateField(help_text="UTC day")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "instance", "hourly_amount"],
                condition=Q(instance__isnull=False),
                name="usage_day_one_per_instance_price",
            ),
            models.UniqueConstraint(
                fields=["day", "reservation", "hourly_amount"],
                condition=Q(reservation__isnull=False),
                name="usage_day_one_per_reservation_price",
            ),
            models.CheckConstraint(
                condition=_ONE_SUBJECT,
                name="usage_day_instance_xor_reservation",
            ),
        ]
        indexes = [models.Index(fields=["organization", "day"])]

    def __str__(self) -> str:
        return f"{self.seconds} s of {self.instance_id or self.reservation_id} on {self.day}"


class RollupCursor(models.Model):
    """How far the roll-up has read a source: the last usage record / reservation charge id
    folded in, or the last hour whose telemetry was folded in. One row per source."""

    source = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0)
    until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source} at {self.position} / {self.until}"
