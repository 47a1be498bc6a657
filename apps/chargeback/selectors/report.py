"""Chargeback reads: usage and cost of an organization over whole UTC days, grouped by up to two
dimensions, filtered by effective labels; the per-day series for the stacked chart. Reads the
daily roll-up (UsageDay) only, never usage records or telemetry.

Costs follow the invoice's rule (see _sql.py): per subject and unit price rounded once, groups
are sums of those, so any grouping of a month adds up to the month's invoice lines to the cent.
Every function runs a fixed number of queries (one aggregate, then one name lookup per
dimension), whatever the number of rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from django.db import connection

from apps.accounts.labels import LABEL_KEY

from ._sql import (
    COST_SQL,
    LABEL_PREFIX,
    USAGE_DAY,
    dimension_sql,
    label_keys,
    label_reads,
    labels_where,
    subjects_sql,
    usage_where,
)
from .idle import IdleHolder, chargeback_idle_holders  # noqa: F401 - part of this module's API
from .measures import GpuTimeMeasures, gpu_hours
from .names import dimension_names

# Dimension names used in URLs, the API and CSV; `label:<key>` groups by an effective label.
DIMENSIONS: tuple[str, ...] = ("project", "owner", "instance", "offering", "flavor", "region")
DIMENSION_TITLES = {
    "project": "Project",
    "owner": "User",
    "instance": "Instance",
    "offering": "Offering",
    "flavor": "Flavor",
    "region": "Region",
}
GROUP_BY_MAX = 2
DEFAULT_CURRENCY = "USD"


def dimension_is_valid(name: str) -> bool:
    if name in DIMENSIONS:
        return True
    return name.startswith(LABEL_PREFIX) and bool(LABEL_KEY.match(name[len(LABEL_PREFIX) :]))


def dimension_title(name: str) -> str:
    """A column heading: 'Project', 'User', … or the label key itself ('cost-centre')."""
    return name[len(LABEL_PREFIX) :] if name.startswith(LABEL_PREFIX) else DIMENSION_TITLES[name]


@dataclass(frozen=True)
class ChargebackQuery:
    organization_id: int
    start: date  # first UTC day, inclusive
    end: date  # last UTC day, EXCLUSIVE
    group_by: tuple[str, ...] = ()  # 0, 1 or 2 names from DIMENSIONS (or label:<key>)
    labels: tuple[tuple[str, str], ...] = ()  # effective-label filters; all must match
    owner_id: int | None = None  # a member or viewer sees only their own usage
    project_id: int | None = None  # drill-down
    instance_id: object = None  # drill-down (an instance's UUID)

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class ChargebackKey:
    """One group key: the dimension, a stable value (an id as text, a label's value; None for
    "no label" or a deleted owner) and what people read."""

    dimension: str
    value: str | None
    name: str


@dataclass(frozen=True)
class ChargebackRow(GpuTimeMeasures):
    keys: tuple[ChargebackKey, ...]
    seconds: int  # billed seconds, corrections included
    allocated_milli_seconds: int
    used_milli_seconds: int
    cost: Decimal  # sum of the rows' subjects' rounded costs
    currency: str

    @property
    def hours(self) -> Decimal:
        return gpu_hours(self.seconds * 1000)

    @property
    def label(self) -> str:
        return " / ".join(k.name for k in self.keys) or "Total"


@dataclass(frozen=True)
class ChargebackReport:
    query: ChargebackQuery
    rows: list[ChargebackRow]
    total: ChargebackRow  # the sum of `rows` of the report's currency (keys ())
    currency: str


def _group_sql(query: ChargebackQuery, *, per_day: bool = False) -> tuple[str, list, int]:
    """The aggregate per group: (sql, params, number of key columns). Each result row is the key
    columns (the day first if `per_day`, then one per group dimension), then seconds, allocated,
    used, cost, currency.

    The report groups subject rows (subjects_sql: each subject's range summed, then rounded
    once); the daily chart groups UsageDay rows as they are (each is one subject's day at one
    price, so rounding each is the rule applied per day)."""
    where = usage_where(
        organization_id=query.organization_id,
        start=query.start,
        end=query.end,
        owner_id=query.owner_id,
        project_id=query.project_id,
        instance_id=query.instance_id,
    )
    reads = label_reads(organization_id=query.organization_id, keys=label_keys(query.group_by, query.labels))
    labels = labels_where(query.labels, reads)
    keys = (["r.day"] if per_day else []) + [dimension_sql(d, reads) for d in query.group_by]
    params = list(reads.params)
    if per_day:
        source, conditions = f"{USAGE_DAY} r", [where, labels]
    else:
        subjects, subject_params = subjects_sql(where)
        source, conditions = f"({subjects}) r", [labels]
        params += subject_params
    for condition in conditions:
        params += condition.params
    # GROUP BY the key columns and the currency, by position (the expressions carry parameters).
    positions = ", ".join(str(n) for n in [*range(1, len(keys) + 1), len(keys) + 5])
    sql = (
        f"{reads.with_sql}SELECT {', '.join([*keys, ''])}SUM(r.seconds), SUM(r.allocated_milli_seconds), "
        f"SUM(r.used_milli_seconds), SUM({COST_SQL}), r.currency "
        f"FROM {source}{reads.joins} WHERE {' AND '.join(c.sql for c in conditions)} GROUP BY {positions}"
    )
    return sql, params, len(keys)


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _names(group_by: tuple[str, ...], raw_keys: list[tuple]) -> list[dict]:
    return [dimension_names(d, (k[n] for k in raw_keys)) for n, d in enumerate(group_by)]


def _report_currency(currencies: dict[str, Decimal]) -> str:
    # An organization bills in one currency; were there several, the largest is the report's.
    if not currencies:
        return DEFAULT_CURRENCY
    return max(currencies.items(), key=lambda item: (item[1], item[0]))[0]


def _row_sort_key(row: ChargebackRow) -> tuple:
    # Biggest cost first; ties by name then value, so pages of the API walk a stable order.
    return (-row.cost, -row.seconds, *((k.name, k.value or "") for k in row.keys), row.currency)


def chargeback_report(*, query: ChargebackQuery) -> ChargebackReport:
    """Rows grouped by `query.group_by` (one row, the total, when it is empty), biggest cost
    first, and their total. Two queries plus one per group dimension (two for `instance`)."""
    sql, params, n_keys = _group_sql(query)
    raw = _fetch(sql, params)
    names = _names(query.group_by, raw)
    rows = [
        ChargebackRow(
            keys=tuple(
                ChargebackKey(dimension=d, value=r[n], name=names[n][r[n]]) for n, d in enumerate(query.group_by)
            ),
            seconds=int(r[n_keys]),
            allocated_milli_seconds=int(r[n_keys + 1]),
            used_milli_seconds=int(r[n_keys + 2]),
            cost=Decimal(r[n_keys + 3]),
            currency=r[n_keys + 4],
        )
        for r in raw
    ]
    rows.sort(key=_row_sort_key)
    by_currency: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        by_currency[row.currency] += row.cost
    currency = _report_currency(by_currency)
    mine = [row for row in rows if row.currency == currency]
    total = ChargebackRow(
        keys=(),
        seconds=sum(r.seconds for r in mine),
        allocated_milli_seconds=sum(r.allocated_milli_seconds for r in mine),
        used_milli_seconds=sum(r.used_milli_seconds for r in mine),
        cost=sum((r.cost for r in mine), Decimal(0)),
        currency=currency,
    )
    return ChargebackReport(query=query, rows=rows, total=total, currency=currency)


# --- the stacked daily chart --------------------------------------------------------------------


@dataclass(frozen=True)
class ChargebackSeries:
    key: ChargebackKey | None  # None: the whole organization (no group) or "Other" (folded)
    name: str
    cost: list[Decimal]  # one per day of ChargebackDaily.days
    allocated_gpu_hours: list[Decimal]
    used_gpu_hours: list[Decimal]

    @property
    def total_cost(self) -> Decimal:
        return sum(self.cost, Decimal(0))


@dataclass(frozen=True)
class ChargebackDaily:
    days: list[date]  # every UTC day of the range, usage or not
    series: list[ChargebackSeries]  # biggest total cost first; "Other" last
    currency: str


_OTHER = object()  # the folded series' key: no group value can be it


@dataclass
class _Acc:
    cost: dict = field(default_factory=lambda: defaultdict(Decimal))
    allocated: dict = field(default_factory=lambda: defaultdict(int))
    used: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, day, cost, allocated, used) -> None:
        self.cost[day] += cost
        self.allocated[day] += allocated
        self.used[day] += used

    def total(self) -> Decimal:
        return sum(self.cost.values(), Decimal(0))


def chargeback_daily(*, query: ChargebackQuery, top: int | None = None) -> ChargebackDaily:
    """Cost and GPU-hours per UTC day per value of the first group dimension (one series when
    there is none). The rule is applied per day (each subject's day rounded once), which is exact
    for a chart; the report's figures are the ones that reconcile. `top`: keep the biggest `top`
    series and fold the rest into one "Other"."""
    query = replace(query, group_by=query.group_by[:1])
    sql, params, n_keys = _group_sql(query, per_day=True)
    raw = _fetch(sql, params)
    currencies: dict[str, Decimal] = defaultdict(Decimal)
    for r in raw:
        currencies[r[n_keys + 4]] += Decimal(r[n_keys + 3])
    currency = _report_currency(currencies)
    accs: dict[str | None, _Acc] = defaultdict(_Acc)
    for r in raw:
        if r[n_keys + 4] != currency:
            continue
        value = r[1] if query.group_by else None
        accs[value].add(r[0], Decimal(r[n_keys + 3]), int(r[n_keys + 1]), int(r[n_keys + 2]))
    names = dimension_names(query.group_by[0], accs.keys()) if query.group_by else {}
    ordered = sorted(accs.items(), key=lambda item: (-item[1].total(), names.get(item[0], ""), item[0] or ""))
    if top is not None and len(ordered) > top:
        other = _Acc()
        for _, acc in ordered[top:]:
            for day in acc.cost:
                other.add(day, acc.cost[day], acc.allocated[day], acc.used[day])
        ordered = [*ordered[:top], (_OTHER, other)]
    days = [query.start + timedelta(days=n) for n in range(query.days)]
    series = []
    for value, acc in ordered:
        if value is _OTHER:
            key, name = None, "Other"
        elif query.group_by:
            key = ChargebackKey(dimension=query.group_by[0], value=value, name=names[value])
            name = key.name
        else:
            key, name = None, "Total"
        series.append(
            ChargebackSeries(
                key=key,
                name=name,
                cost=[acc.cost.get(d, Decimal(0)) for d in days],
                allocated_gpu_hours=[gpu_hours(acc.allocated.get(d, 0)) for d in days],
                used_gpu_hours=[gpu_hours(acc.used.get(d, 0)) for d in days],
            )
        )
    return ChargebackDaily(days=days, series=series, currency=currency)
