"""How money and prices are written for people. Amounts are Decimal end to end, never float."""

from __future__ import annotations

from decimal import Decimal

# Currencies written with a leading symbol; any other ISO code is written after the amount.
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

CENT = Decimal("0.01")


def money_format(*, amount: Decimal, currency: str) -> str:
    """`$2.49`, `$0.0004`, `1,200.00 CHF`: at least two decimals, more only when they matter."""
    normalized = amount.normalize()
    if normalized.as_tuple().exponent > -2:
        normalized = amount.quantize(CENT)
    sign = "-" if normalized < 0 else ""
    number = f"{abs(normalized):,f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"
