"""Fixtures shared by the billing tests live in tests/conftest.py (stripe_webhooks_live is used by
browser journeys too)."""
