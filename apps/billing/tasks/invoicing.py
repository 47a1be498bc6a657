"""Billing tasks: invoicing."""

from __future__ import annotations
