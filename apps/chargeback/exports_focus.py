"""The FOCUS rows as CSV, the file format FinOps tools (and the FOCUS validator) read.

A null is an empty field, as FOCUS CSV files write it; decimals are plain (no symbol, no
thousands separator); the header is the FOCUS column names in FOCUS_COLUMNS' order."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .selectors.focus import FOCUS_COLUMNS


def focus_csv(*, rows: Iterable[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else row[column] for column in FOCUS_COLUMNS])
    return buffer.getvalue()


def focus_csv_filename(*, organization_slug: str, month_text: str) -> str:
    return f"focus-{organization_slug}-{month_text}.csv"
