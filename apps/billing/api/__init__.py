"""Billing REST API (v1), one module per concern."""
