"""Billing tasks: budgets."""

from __future__ import annotations
