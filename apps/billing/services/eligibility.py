"""Placeholder until the budgets/eligibility work lands (same session)."""

from __future__ import annotations


def billing_launch_eligibility_check(*, organization, project=None) -> None:
    return None
