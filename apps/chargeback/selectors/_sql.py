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


# The cost of one subject at one price over the grouped rows: rounded once.
SUBJECT_COST_SQL = f"ROUND(SUM(r.seconds) * r.hourly_amount / 3600.0, {_round_digits_sql()})"
# What identifies a subject at a price (the invoice line's key).
SUBJECT_KEY_SQL = "r.instance_id, r.reservation_id, r.hourly_amount, r.currency"


def dimension_sql(dimension: str) -> tuple[str, list]:
    """The SQL expression (text, so every key compares and sorts alike) a dimension groups by,
    with its parameters. Needs the aliases r (UsageDay), i (its instance), p (its project)."""
    if dimension.startswith(LABEL_PREFIX):
        key = dimension[len(LABEL_PREFIX) :]
        # Effective labels: the instance's value for the key, else its project's.
        return "COALESCE(i.labels ->> %s, p.labels ->> %s)", [key, key]
    column = {
        "project": "r.project_id::text",
        "owner": "r.owner_id::text",
        "instance": "COALESCE(r.instance_id::text, 'reservation:' || r.reservation_id::text)",
        "offering": "r.offering_id::text",
        "flavor": "r.flavor_id::text",
        "region": "r.region_id::text",
    }[dimension]
    return column, []


@dataclass
class Filter:
    """FROM … WHERE … over UsageDay with the joins effective labels need."""

    sql: str
    params: list = field(default_factory=list)


def usage_filter(
    *,
    organization_id: int,
    start,
    end,
    labels: tuple[tuple[str, str], ...] = (),
    owner_id: int | None = None,
    project_id: int | None = None,
    instance_id=None,
    instances_only: bool = False,
) -> Filter:
    """FROM/WHERE of the rows of one organization's UTC days [start, end), filtered. The
    instance and project joins are always there: label dimensions and filters read them, and
    both are primary-key probes."""
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
    for key, value in labels:
        where.append("COALESCE(i.labels ->> %s, p.labels ->> %s) = %s")
        params += [key, key, value]
    sql = (
        f"FROM {USAGE_DAY} r LEFT JOIN {INSTANCE} i ON i.id = r.instance_id "
        f"JOIN {PROJECT} p ON p.id = r.project_id WHERE " + " AND ".join(where)
    )
    return Filter(sql, params)
