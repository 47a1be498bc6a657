"""GPU-time measures as people read them, from the roll-ups' integers (thousandths of a GPU ×
seconds): hours to 0.0001 and utilisation to 0.1 %, rounded half up. One place, so the report,
the idle holders and their CSV write the same figure for the same integers."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MILLI_PER_GPU_HOUR = Decimal(3_600_000)  # a whole GPU for one hour
_HOURS = Decimal("0.0001")
_PCT = Decimal("0.1")


def gpu_hours(milli_seconds: int) -> Decimal:
    """Thousandths of a GPU × seconds → GPU-hours (seconds × 1000 → hours, likewise)."""
    return (Decimal(milli_seconds) / MILLI_PER_GPU_HOUR).quantize(_HOURS, rounding=ROUND_HALF_UP)


def utilisation_pct(*, used_milli_seconds: int, allocated_milli_seconds: int) -> Decimal | None:
    """Used over allocated GPU time in percent; None when nothing was allocated."""
    if not allocated_milli_seconds:
        return None
    value = Decimal(used_milli_seconds) * 100 / Decimal(allocated_milli_seconds)
    return value.quantize(_PCT, rounding=ROUND_HALF_UP)
