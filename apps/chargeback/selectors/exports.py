"""CSV of a chargeback report: what the page's download and the API's ?format=csv both serve.

One line per group, then a TOTAL line equal to the report's total, so a spreadsheet's sum of the
cost column is the page's total to the cent. Figures are written as exact decimals (never floats
or locale-formatted text). Names people typed (projects, instances, label values) are guarded
against spreadsheet formula injection: a cell starting with = + - @ or a control character is
prefixed with an apostrophe, as OWASP advises.

The streaming response helper lives beside the generator so both the page view and the API view
answer a download the same way (headers, file name, no buffering of a year of rows).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import timedelta
from decimal import Decimal

from django.http import StreamingHttpResponse

from .idle import IdleHolder
from .report import ChargebackDaily, ChargebackReport, ChargebackRow, dimension_title

CSV_MEASURES = ("hours", "allocated_gpu_hours", "used_gpu_hours", "utilisation_pct", "cost", "currency")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


class _Line:
    """csv.writer's file: each write returns the line it was given."""

    def write(self, text: str) -> str:
        return text


def _text(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _decimal(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def _measures(row: ChargebackRow) -> list[str]:
    return [
        _decimal(row.hours),
        _decimal(row.allocated_gpu_hours),
        _decimal(row.used_gpu_hours),
        _decimal(row.utilisation_pct),
        _decimal(row.cost),
        row.currency,
    ]


def chargeback_csv_header(report: ChargebackReport) -> list[str]:
    """The page's column titles ("Project", "User", a label's key), then the measures' names. A
    label whose key is a measure's name ("cost") is titled label:<key>, so no name is twice."""
    keys = [d if dimension_title(d) in CSV_MEASURES else dimension_title(d) for d in report.query.group_by]
    return [*(keys or ["Scope"]), *CSV_MEASURES]


def chargeback_csv(*, report: ChargebackReport) -> Iterator[str]:
    """The report as CSV lines (each ending in CRLF): a header, a line per row, a TOTAL line."""
    writer = csv.writer(_Line())
    width = max(1, len(report.query.group_by))
    yield writer.writerow(chargeback_csv_header(report))
    for row in report.rows:
        keys = [_text(k.name) for k in row.keys] or ["All usage"]
        yield writer.writerow([*keys, *_measures(row)])
    yield writer.writerow(["TOTAL", *[""] * (width - 1), *_measures(report.total)])


def chargeback_daily_csv(*, daily: ChargebackDaily) -> Iterator[str]:
    """The daily series as CSV lines in long form (a line per day and series), which pivot
    tables read directly: day, series, its key value, cost, allocated and used GPU-hours."""
    writer = csv.writer(_Line())
    yield writer.writerow(["day", "series", "value", "cost", "allocated_gpu_hours", "used_gpu_hours", "currency"])
    for series in daily.series:
        value = "" if series.key is None or series.key.value is None else series.key.value
        for n, day in enumerate(daily.days):
            yield writer.writerow(
                [
                    day.isoformat(),
                    _text(series.name),
                    _text(value),
                    _decimal(series.cost[n]),
                    _decimal(series.allocated_gpu_hours[n]),
                    _decimal(series.used_gpu_hours[n]),
                    daily.currency,
                ]
            )


IDLE_CSV_HEADER = (
    "instance",
    "instance_id",
    "state",
    "owner",
    "project",
    "flavor",
    "allocated_gpu_hours",
    "used_gpu_hours",
    "wasted_gpu_hours",
    "utilisation_pct",
    "cost",
    "currency",
)


def chargeback_idle_csv(*, holders: Iterable[IdleHolder]) -> Iterator[str]:
    """Idle holders as CSV lines, most wasted GPU-hours first (their order)."""
    writer = csv.writer(_Line())
    yield writer.writerow(IDLE_CSV_HEADER)
    for h in holders:
        yield writer.writerow(
            [
                _text(h.instance_name),
                str(h.instance_id),
                h.instance_state,
                _text(h.owner_name),
                _text(h.project_name),
                _text(h.flavor_name),
                _decimal(h.allocated_gpu_hours),
                _decimal(h.used_gpu_hours),
                _decimal(h.wasted_gpu_hours),
                _decimal(h.utilisation_pct),
                _decimal(h.cost),
                h.currency,
            ]
        )


def chargeback_csv_filename(*, report: ChargebackReport, organization_slug: str) -> str:
    """acme-chargeback-2026-11-01-to-2026-11-30-by-project-owner.csv (the last day, inclusive)."""
    query = report.query
    last = query.end - timedelta(days=1)
    by = "-by-" + "-".join(d.replace(":", "-").replace("/", "-") for d in query.group_by) if query.group_by else ""
    return f"{organization_slug}-chargeback-{query.start}-to-{last}{by}.csv"


def csv_streaming_response(*, lines: Iterable[str], filename: str) -> StreamingHttpResponse:
    """A download of `lines` streamed as they are made (text/csv; UTF-8)."""
    response = StreamingHttpResponse((line.encode() for line in lines), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def chargeback_csv_response(*, report: ChargebackReport, organization_slug: str) -> StreamingHttpResponse:
    """The report's CSV as a download: what the page's Download button and the API's ?format=csv answer."""
    return csv_streaming_response(
        lines=chargeback_csv(report=report),
        filename=chargeback_csv_filename(report=report, organization_slug=organization_slug),
    )
