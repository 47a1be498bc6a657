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


class GpuTimeMeasures:
    """allocated_gpu_hours, used_gpu_hours and utilisation_pct of a row that carries the roll-ups'
    allocated_milli_seconds and used_milli_seconds (a report row, an idle holder): one definition,
    so the two write the same figure for the same integers."""

    allocated_milli_seconds: int
    used_milli_seconds: int

    @property
    def allocated_gpu_hours(self) -> Decimal:
        return gpu_hours(self.allocated_milli_seconds)

    @property
    def used_gpu_hours(self) -> Decimal:
        return gpu_hours(self.used_milli_seconds)

    @property
    def utilisation_pct(self) -> Decimal | None:
        return utilisation_pct(
            used_milli_seconds=self.used_milli_seconds, allocated_milli_seconds=self.allocated_milli_seconds
        )
