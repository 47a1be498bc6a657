"""Reservation billing task. Idempotent: a reservation's charges are written once."""

from __future__ import annotations

from celery import shared_task

from ..services.reservations import reservation_charges_write


@shared_task(ignore_result=True)
def reservation_charges() -> int:
    """Charge reservations whose capacity has been held (beat, every BILLING["METER_EVERY_S"])."""
    return reservation_charges_write()
