from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ReservationCharge(models.Model):
    """What a reservation costs for one calendar month of its held window: from when its capacity
    was held (its start, or later if it was short) to its end, used or not, at the price quoted
    when it was booked. Written once its capacity is held (services.reservations), cut at month
    boundaries so each charge belongs to exactly one monthly invoice, like usage records; never
    changed afterwards.

    `hourly_amount` is the whole reservation's price per hour: the quote's unit price × its units
    (GPUs over the flavor's GPU count, or whole nodes)."""

    reservation = models.ForeignKey("capacity.Reservation", on_delete=models.PROTECT, related_name="charges")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey("accounts.Project", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    seconds = models.BigIntegerField()
    hourly_amount = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["period_start", "id"]
        indexes = [models.Index(fields=["organization", "period_start"])]
        constraints = [
            # Two passes racing charge a reservation's month once.
            models.UniqueConstraint(fields=["reservation", "period_start"], name="reservation_charge_once_per_start"),
            models.CheckConstraint(condition=Q(seconds__gt=0), name="reservation_charge_seconds_positive"),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="reservation_charge_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.seconds} s of reservation {self.reservation_id} at {self.hourly_amount}/h"


class InvoicedReservationCharge(models.Model):
    """Which invoice line billed a reservation charge: one row per charge, so the database refuses
    to bill one twice (as InvoicedUsage does for usage records)."""

    charge = models.OneToOneField(ReservationCharge, on_delete=models.PROTECT, primary_key=True, related_name="+")
    line = models.ForeignKey("billing.InvoiceLine", on_delete=models.CASCADE, related_name="reservation_charges")

    def __str__(self) -> str:
        return f"charge {self.charge_id} on line {self.line_id}"
