"""How amounts of money are written for people: the one formatter of the portal.

Amounts are Decimal end to end. An amount is rounded half-up to its currency's minor unit (what
a customer pays), except one smaller than that unit but not zero, which keeps two significant
digits so that it never reads as free. A price (`exact=True`) is never rounded: it shows every
digit that matters, and at least the minor unit's ("$2.4875", "$0.00015", "$20.00"). A negative amount takes a
true minus sign: "−$0.43". Pages that can say what a negative amount means ("$0.43 to be
charged to your card") should say that instead.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor units for the currencies we sell in; zero-decimal currencies have 0.
MINOR_DIGITS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
# Currencies written with a leading symbol; any other ISO code is written after the amount.
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
MINUS = "\u2212"


def money_minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency.upper(), 2)


def money_format(amount: Decimal | int | str, currency: str, *, exact: bool = False) -> str:
    """`$2.49`, `−$0.43`, `$0.0004`, `1,200.00 CHF`."""
    value = Decimal(amount)
    digits = money_minor_digits(currency)
    rounded = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if exact and value.normalize().as_tuple().exponent < -digits:
        rounded = value.normalize()
    elif rounded == 0 and value != 0:
        # Below one minor unit: two significant digits, e.g. 0.00041666 -> 0.00042.
        exponent = value.adjusted() - 1
        rounded = value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    number = f"{abs(rounded):,f}"
    sign = MINUS if rounded < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"
