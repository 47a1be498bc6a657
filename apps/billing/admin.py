"""Billing in the Django admin, one module per concern (each registers its own models)."""

from . import admin_credits  # noqa: F401
