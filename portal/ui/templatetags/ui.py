"""The toolkit's template library: `{% load ui %}`.

    {{ amount|money:currency }}                       the one money formatter (rounded to cents)
    {{ flavor_price|price:currency }}                 the same, for list prices: no digit rounded away
    {% state_badge instance.state instance.get_state_display %}
    {% progress used total label="GPU memory" %}      a labelled bar, or a spinner without total
    {% empty_state "No instances yet" "Launch one from the catalog." url "Open the catalog" %}
    {% chart "gpu-util" spec caption="GPU utilisation" %}   spec from portal.ui.charts.chart_spec
    {% table table %}                                 a PortalTable, sortable and paginated
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template
from django.http import QueryDict

from ..badges import state_tone
from ..money import money_format

register = template.Library()


@register.filter
def money(amount, currency: str = "USD") -> str:
    if amount is None or amount == "":
        return ""
    try:
        return money_format(Decimal(amount), currency or "USD")
    except (InvalidOperation, TypeError, ValueError):
        return ""


@register.filter
def price(amount, currency: str = "USD") -> str:
    """A list price: every digit that matters is shown, never rounded away."""
    if amount is None or amount == "":
        return ""
    try:
        return money_format(Decimal(amount), currency or "USD", exact=True)
    except (InvalidOperation, TypeError, ValueError):
        return ""


@register.filter
def duration_short(seconds) -> str:
    """3725 → "1h 2m 5s"; 192 → "3m 12s"."""
    seconds = max(int(seconds or 0), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


@register.filter
def tone(state) -> str:
    return state_tone(state)


@register.inclusion_tag("ui/badge.html")
def state_badge(state, label=None, testid: str = "state") -> dict:
    return {"state": state, "label": label if label is not None else state, "tone": state_tone(state), "testid": testid}


@register.inclusion_tag("ui/progress.html")
def progress(value=None, total=None, label: str = "", text: str = "") -> dict:
    """A bar from 0 to `total`; with no total (work whose length is unknown) an animated bar."""
    percent = None
    if total:
        percent = max(0, min(100, round(float(value or 0) * 100 / float(total))))
    return {"percent": percent, "label": label, "text": text}


@register.inclusion_tag("ui/empty.html")
def empty_state(title: str, text: str = "", url: str = "", action: str = "") -> dict:
    return {"title": title, "text": text, "url": url, "action": action}


@register.inclusion_tag("ui/chart.html")
def chart(name: str, spec: dict, caption: str = "", height: int = 220) -> dict:
    empty = not spec.get("labels") or not any(any(v is not None for v in s["values"]) for s in spec.get("series", []))
    return {"name": name, "spec": spec, "caption": caption, "height": height, "empty": empty,
            "data_id": f"chart-data-{name}"}


@register.inclusion_tag("ui/table.html")
def table(table) -> dict:
    return {"table": table}


@register.simple_tag
def table_query(table, **changes) -> str:
    """The table's current query string with `changes` applied, for sort and page links: read
    from the request it was configured with (portal.ui.tables.table_configure), so a live push
    builds the same links as the page."""
    request = getattr(table, "request", None)
    query = request.GET.copy() if request is not None else QueryDict(mutable=True)
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    encoded = query.urlencode()
    return f"?{encoded}" if encoded else "?"
