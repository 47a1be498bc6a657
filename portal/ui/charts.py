"""Chart specifications for the chart partial (`{% chart %}` in ui.py, static/js/charts.js).

A spec is plain JSON: labels along the x axis and named series of numbers. Charts are for
looking, so values become floats here; the exact amounts stay in the page's text and tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

ChartKind = Literal["line", "bar"]


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[Decimal | float | int | None]


def chart_spec(
    *,
    kind: ChartKind,
    labels: Iterable[str],
    series: Iterable[Series],
    unit: str = "",
    stacked: bool = False,
    y_max: float | None = None,
) -> dict:
    """What `{% chart %}` draws. `unit` is written after each value ("%", "GiB") or, for a
    currency symbol such as "$", before it."""
    return {
        "kind": kind,
        "labels": [str(label) for label in labels],
        "series": [
            {"label": s.label, "values": [None if v is None else float(v) for v in s.values]} for s in series
        ],
        "unit": unit,
        "stacked": stacked,
        "yMax": y_max,
    }
