"""Shared chargeback test data (kept small: each test file builds the rest itself).

`reservation_held` books nothing through capacity: it writes a reservation row already held and
its charges with billing's own plan (reservation_charges_plan), for tests of what the roll-up
and the reports make of a charge. Tests of booking itself live in tests/capacity and tests/billing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from apps.billing.models import ReservationCharge
from apps.billing.services.reservations import reservation_charges_plan
from apps.capacity.models import Reservation, ReservationState
from apps.catalog.models import Flavor, Region


def reservation_held(
    *, project, flavor: Flavor, region: Region, start: datetime, end: datetime, gpus: int, hourly_amount: str,
    created_by=None,
) -> Reservation:
    """A reservation of `gpus` GPUs of `flavor` held over [start, end), and its charges (cut at
    month boundaries by billing) at `hourly_amount` per unit (units = gpus / flavor GPUs)."""
    reservation = Reservation.objects.create(
        organization_id=project.organization_id,
        project=project,
        flavor=flavor,
        region=region,
        gpu_model_id=flavor.gpu_model_id,
        gpus=gpus,
        starts_at=start,
        ends_at=end,
        state=ReservationState.ENDED,
        held_from=start,
        units=gpus // flavor.gpu_count,
        hourly_amount=Decimal(hourly_amount),
        currency="USD",
        created_by=created_by,
    )
    ReservationCharge.objects.bulk_create(reservation_charges_plan(reservation=reservation))
    return reservation
