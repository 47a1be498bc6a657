"""Money arithmetic. Amounts are Decimal in the currency's major unit; nothing here uses floats.

How amounts are written for people is portal.ui.money's one formatter.

Rounding happens once, where an amount becomes something a customer pays (an invoice line), with
ROUND_HALF_UP to the currency's minor unit. Sums are taken of rounded lines, so an invoice's
total always equals the sum of its lines to the cent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from portal.ui.money import money_minor_digits

SECONDS_PER_HOUR = Decimal(3600)


def money_quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-money_minor_digits(currency))


def money_round(amount: Decimal, currency: str) -> Decimal:
    return Decimal(amount).quantize(money_quantum(currency), rounding=ROUND_HALF_UP)


def money_to_minor(amount: Decimal, currency: str) -> int:
    rounded = money_round(amount, currency)
    return int(rounded.scaleb(money_minor_digits(currency)))


def money_from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-money_minor_digits(currency))


def usage_cost_exact(*, seconds: int, hourly_amount: Decimal) -> Decimal:
    """Unrounded cost of `seconds` at `hourly_amount` per hour. Exact to 28 significant digits,
    which is far below a millionth of a cent for any realistic usage."""
    return Decimal(seconds) * Decimal(hourly_amount) / SECONDS_PER_HOUR


def usage_cost(*, seconds: int, hourly_amount: Decimal, currency: str) -> Decimal:
    """What `seconds` at `hourly_amount` per hour costs, rounded to the minor unit."""
    return money_round(usage_cost_exact(seconds=seconds, hourly_amount=hourly_amount), currency)
