"""Billing URLs: budgets."""

urlpatterns: list = []
