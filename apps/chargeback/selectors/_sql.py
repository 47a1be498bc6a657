"""SQL pieces the chargeback selectors share: the range/tenant/label filter over UsageDay, each
dimension's grouping expression, and the invoice's cost rule as SQL.

The cost rule (apps.billing.money, the invoice builder): per (instance or reservation, unit
price, currency) over the range, seconds × price / 3600 rounded ONCE to the currency's minor unit,
half away from zero. PostgreSQL's ROUND(numeric, n) rounds half away from zero, which is Decimal's
ROUND_HALF_UP, so the subject costs computed here are the invoice's lines to the cent. Groups are
sums of those rounded subject costs: a subject's dimensions (project, owner, flavor, labels, …)
are properties of the instance or reservation, so every grouping adds up to the same total.

Raw SQL rather than the ORM: the rule is an aggregate of an aggregate (round per subject, then
sum per group), which the ORM cannot say without a subquery per measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.accounts.models import Project
from apps.instances.models import Instance
from portal.ui.money import MINOR_DIGITS

from ..models import UsageDay

USAGE_DAY = UsageDay._meta.db_table
INSTANCE = Instance._meta.db_table
PROJECT = Project._meta.db_table

LABEL_PREFIX = "label:"


def _round_digits_sql() -> str:
    # A currency's minor digits as SQL (2 unless the table says otherwise, as money_minor_digits).
    whens = " ".join(f"WHEN '{code}' THEN {digits}" for code, digits in sorted(MINOR_DIGITS.items()) if digits != 2)
    return f"(CASE r.currency {whens} ELSE 2 END)" if whens else "2"


# The cost of a row of `seconds` at `hourly_amount`, rounded once: a subject's row (its seconds
# over the range summed first) for the report, or one UsageDay row (one subject's day at one
# price: the table is unique on that) for the daily chart.
COST_SQL = f"ROUND(r.seconds * r.hourly_amount / 3600.0, {_round_digits_sql()})"
# What a subject row is keyed by: the invoice line's key (instance or reservation, unit price;
# an instance has one currency). Its properties, which the dimensions read, are one value per
# subject (the roll-up copies them from the instance or reservation); MIN picks it. Keying by
# them too would give the same rows but costs half again as much over a year of rows.
SUBJECT_KEY = "r.instance_id, r.reservation_id, r.hourly_amount, r.currency"
SUBJECT_PROPERTIES = (
    "MIN(r.project_id) AS project_id, MIN(r.owner_id) AS owner_id, MIN(r.offering_id) AS offering_id, "
    "MIN(r.flavor_id) AS flavor_id, MIN(r.region_id) AS region_id"
)
MEASURES_SUM = (
    "SUM(r.seconds) AS seconds, SUM(r.allocated_milli_seconds) AS allocated_milli_seconds, "
    "SUM(r.used_milli_seconds) AS used_milli_seconds"
)


@dataclass
class LabelReads:
    """How a statement reads effective labels: for each key, the organization's instances' and
    projects' values of it, read once into a small materialized table (a few thousand rows) and
    joined to the usage rows by id. Reading the JSON of every usage row's instance instead costs
    more than the whole aggregate over a year of rows."""

    with_sql: str = ""  # "WITH …" (or nothing), to start the statement
    joins: str = ""
    params: list = field(default_factory=list)  # of with_sql
    exprs: dict[str, str] = field(default_factory=dict)  # key -> the row's effective value


def label_reads(*, organization_id: int, keys) -> LabelReads:
    """LabelReads for `keys` (duplicates ignored); empty when there are none."""
    reads = LabelReads()
    ctes = []
    for n, key in enumerate(dict.fromkeys(keys)):
        for alias, table in ((f"il{n}", INSTANCE), (f"pl{n}", PROJECT)):
            ctes.append(
                f"{alias} AS MATERIALIZED (SELECT id, labels ->> %s AS v FROM {table} "
                "WHERE organization_id = %s AND labels ? %s)"
            )
            reads.params += [key, organization_id, key]
        # Effective labels: the instance's value for the key, else its project's (a reservation
        # has no labels of its own).
        reads.joins += f" LEFT JOIN il{n} ON il{n}.id = r.instance_id LEFT JOIN pl{n} ON pl{n}.id = r.project_id"
        reads.exprs[key] = f"COALESCE(il{n}.v, pl{n}.v)"
    if ctes:
        reads.with_sql = "WITH " + ", ".join(ctes) + " "
    return reads


def label_keys(dimensions: tuple[str, ...], labels: tuple[tuple[str, str], ...]) -> list[str]:
    """The label keys a query reads: its label dimensions' and its filters'."""
    return [d[len(LABEL_PREFIX) :] for d in dimensions if d.startswith(LABEL_PREFIX)] + [k for k, _ in labels]


def dimension_sql(dimension: str, reads: LabelReads) -> str:
    """The SQL expression (text, so every key compares and sorts alike) a dimension groups by.
    Reads r (a UsageDay or subject row), and `reads`' joins for a label."""
    if dimension.startswith(LABEL_PREFIX):
        return reads.exprs[dimension[len(LABEL_PREFIX) :]]
    return {
        "project": "r.project_id::text",
        "owner": "r.owner_id::text",
        "instance": "COALESCE(r.instance_id::text, 'reservation:' || r.reservation_id::text)",
        "offering": "r.offering_id::text",
        "flavor": "r.flavor_id::text",
        "region": "r.region_id::text",
    }[dimension]


@dataclass
class Where:
    """A WHERE clause's text and parameters."""

    sql: str
    params: list = field(default_factory=list)


def usage_where(
    *,
    organization_id: int,
    start,
    end,
    owner_id: int | None = None,
    project_id: int | None = None,
    instance_id=None,
    instances_only: bool = False,
) -> Where:
    """The UsageDay rows (alias r) of one organization's UTC days [start, end), filtered by what
    the rows themselves hold; no join."""
    where = ["r.organization_id = %s", "r.day >= %s", "r.day < %s"]
    params: list = [organization_id, start, end]
    if owner_id is not None:
        where.append("r.owner_id = %s")
        params.append(owner_id)
    if project_id is not None:
        where.append("r.project_id = %s")
        params.append(project_id)
    if instance_id is not None:
        where.append("r.instance_id = %s")
        params.append(instance_id)
    if instances_only:
        where.append("r.instance_id IS NOT NULL")
    return Where(" AND ".join(where), params)


def labels_where(labels: tuple[tuple[str, str], ...], reads: LabelReads) -> Where:
    """Every (key, value) must be the row's effective label (through `reads`); TRUE if none."""
    where = [f"{reads.exprs[key]} = %s" for key, _ in labels]
    return Where(" AND ".join(where) or "TRUE", [value for _, value in labels])


def subjects_sql(where: Where) -> tuple[str, list]:
    """One row per subject (and its properties) over the range, its measures summed: what the
    cost rule rounds. Reads UsageDay alone, so the joins and label reads that follow touch one
    row per instance, not one per instance-day."""
    return (
        f"SELECT {SUBJECT_KEY}, {SUBJECT_PROPERTIES}, {MEASURES_SUM} FROM {USAGE_DAY} r "
        f"WHERE {where.sql} GROUP BY {SUBJECT_KEY}",
        where.params,
    )
