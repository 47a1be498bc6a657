from decimal import Decimal

from django import template

from ..formatting import money_format

register = template.Library()


@register.filter
def gib(value: int | None) -> str:
    """Sizes in GiB as people read them: `240 GiB`, `2 TiB`; zero or none as a dash."""
    if not value:
        return "—"
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024:,} TiB"
    return f"{value:,} GiB"


@register.filter
def money(amount: Decimal | None, currency: str = "USD") -> str:
    return "" if amount is None else money_format(amount=amount, currency=currency)
