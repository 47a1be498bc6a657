"""Tables of the chargeback pages (portal.ui.tables): the groups of a report, with a column per
group dimension whose cells drill down, the total in the footer; and the idle holders."""

from __future__ import annotations

from decimal import Decimal

import django_tables2 as tables
from django.http import QueryDict
from django.urls import reverse
from django.utils.html import format_html

from portal.ui.money import money_format
from portal.ui.tables import MoneyColumn, PortalTable, link

from .selectors.idle import IdleHolder
from .selectors.report import ChargebackKey, ChargebackReport, ChargebackRow, dimension_title

LABEL_PREFIX = "label:"
# Drill-down goes organization → project → user → instance.
LEVELS = ("project", "owner", "instance")


DRILL_PARAMS = {"project": "project", "owner": "owner", "instance": "instance"}


def _next_level(dimension: str, *, narrowed: set[str], own_only: bool) -> str | None:
    """The level below `dimension` not narrowed already (below a label: the first level)."""
    levels = [d for d in LEVELS if d not in narrowed and not (own_only and d == "owner")]
    if dimension.startswith(LABEL_PREFIX):
        return levels[0] if levels else None
    if dimension not in LEVELS:
        return None
    below = [d for d in levels if LEVELS.index(d) > LEVELS.index(dimension)]
    return below[0] if below else None


def _narrow(params: QueryDict, key: ChargebackKey, *, project_slugs: dict, own_only: bool) -> bool:
    """Add the filter that keeps only `key`'s group to `params`; False when the query cannot say
    it (an offering, flavor or region; a reservation; no label; a deleted user; a member's own)."""
    d, value = key.dimension, key.value
    if value is None:
        return False
    if d == "project":
        slug = project_slugs.get(int(value))
        if slug is None:
            return False
        params["project"] = slug
    elif d == "owner":
        if own_only:
            return False
        params["owner"] = value
    elif d == "instance":
        if value.startswith("reservation:"):
            return False
        params["instance"] = value
    elif d.startswith(LABEL_PREFIX):
        labels = [v for v in params.getlist("label") if v.strip()]
        params.setlist("label", [", ".join([*labels, f"{d[len(LABEL_PREFIX) :]}={value}"])])
    else:
        return False
    return True


def drill_params(
    base: QueryDict, keys: tuple[ChargebackKey, ...], *, project_slugs: dict, own_only: bool
) -> QueryDict | None:
    """The query that narrows `base` to the group `keys` (a row's keys up to the clicked cell)
    and groups by what is left of the grouping, else one level deeper: project → user →
    instance, a label → project. None when a key cannot be narrowed to."""
    params = base.copy()
    for name in ("page", "sort"):
        params.pop(name, None)
    for key in keys:
        if not _narrow(params, key, project_slugs=project_slugs, own_only=own_only):
            return None
    fixed = {k.dimension for k in keys}
    group_by = [g for g in params.getlist("group_by") for g in g.split(",") if g.strip()]
    rest = [g for g in group_by if g not in fixed]
    if not rest:
        narrowed = {name for name in DRILL_PARAMS if params.get(name)}
        nxt = _next_level(keys[-1].dimension, narrowed=narrowed, own_only=own_only)
        rest = [nxt] if nxt else []
    params.setlist("group_by", rest or [""])
    return params


class KeyColumn(tables.Column):
    """The n-th group dimension of a row: its name, linked to the narrowed report."""

    def __init__(self, index: int, *, drill, **kwargs):
        self.index = index
        self.drill = drill
        super().__init__(accessor=tables.A(f"keys__{index}__name"), **kwargs)

    def render(self, value, record: ChargebackRow):
        params = self.drill(record.keys[: self.index + 1])
        if params is None:
            return value
        return format_html('<a href="?{}" data-testid="drill">{}</a>', params.urlencode(), value)


def _hours(value) -> str:
    return "" if value is None else f"{value:,.2f}"


class MeasureColumn(tables.Column):
    def __init__(self, *args, fmt=_hours, **kwargs):
        self.fmt = fmt
        kwargs.setdefault("attrs", {"td": {"class": "num"}, "th": {"class": "num"}, "tf": {"class": "num"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        return self.fmt(value)


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


class TotalColumn(MeasureColumn):
    """A measure whose footer is the report's total of it (`table.total`)."""

    def render_footer(self, bound_column, table):
        return self.fmt(getattr(table.total, bound_column.name))


class TotalMoneyColumn(MoneyColumn):
    def render_footer(self, table):
        total = table.total
        return format_html(
            '<span data-testid="table-total" data-value="{}">{}</span>',
            f"{total.cost:f}",
            money_format(total.cost, total.currency),
        )


class ChargebackTable(PortalTable):
    hours = TotalColumn(verbose_name="Hours")
    allocated_gpu_hours = TotalColumn(verbose_name="GPU-hours allocated")
    used_gpu_hours = TotalColumn(verbose_name="GPU-hours used")
    # Not sortable: a group without allocated GPUs has no utilisation, and None does not sort.
    utilisation_pct = TotalColumn(verbose_name="Utilisation", fmt=_pct, orderable=False, empty_values=())
    cost = TotalMoneyColumn(
        verbose_name="Cost",
        attrs={"td": {"class": "num", "data-testid": "row-cost"}, "th": {"class": "num"}, "tf": {"class": "num"}},
    )

    class Meta(PortalTable.Meta):
        row_attrs = {"data-testid": "group-row", "data-group": lambda record: record.label}
        empty_text = "No usage in this range."

    @classmethod
    def for_report(
        cls, report: ChargebackReport, *, base: QueryDict, project_slugs: dict, own_only: bool
    ) -> ChargebackTable:
        group_by = report.query.group_by

        def drill(keys: tuple[ChargebackKey, ...]):
            return drill_params(base, keys, project_slugs=project_slugs, own_only=own_only)

        names = [f"k{n}" for n in range(len(group_by))]
        extra = [
            (name, KeyColumn(n, drill=drill, verbose_name=dimension_title(d), footer="Total" if n == 0 else ""))
            for n, (name, d) in enumerate(zip(names, group_by, strict=True))
        ]
        if not group_by:
            names = ["scope"]
            extra = [("scope", tables.Column(accessor="label", verbose_name="Scope", orderable=False, footer="Total"))]
        table = cls(report.rows, extra_columns=extra, sequence=(*names, "..."))
        table.total = report.total
        return table


class IdleTable(PortalTable):
    instance_name = tables.Column(verbose_name="Instance")
    owner_name = tables.Column(verbose_name="Held by")
    project_name = tables.Column(verbose_name="Project")
    flavor_name = tables.Column(verbose_name="Flavor")
    allocated_gpu_hours = MeasureColumn(verbose_name="GPU-hours held")
    used_gpu_hours = MeasureColumn(verbose_name="GPU-hours used")
    utilisation_pct = MeasureColumn(verbose_name="Utilisation", fmt=_pct)
    cost = MoneyColumn(verbose_name="Cost")

    class Meta(PortalTable.Meta):
        row_attrs = {"data-testid": "idle-row", "data-instance": lambda record: record.instance_name}
        empty_text = "No allocation stayed below the threshold for that long in this range."

    def __init__(self, data, *, slug: str, **kwargs):
        super().__init__(data, **kwargs)
        self.slug = slug

    def render_instance_name(self, value, record: IdleHolder):
        return link(reverse("instances:detail", args=[self.slug, record.instance_id]), value)
