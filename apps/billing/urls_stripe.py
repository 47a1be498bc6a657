"""Billing URLs: stripe."""

urlpatterns: list = []
