"""Billing's Celery tasks, one module per concern. Celery discovers `apps.billing.tasks`, so every
module is imported here."""

from . import budgets, invoicing, metering, reservations, stripe  # noqa: F401
