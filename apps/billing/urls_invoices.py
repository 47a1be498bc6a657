"""Billing URLs: invoices."""

urlpatterns: list = []
