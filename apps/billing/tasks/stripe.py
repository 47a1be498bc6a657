"""Billing tasks: stripe."""

from __future__ import annotations
