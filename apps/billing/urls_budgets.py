"""Billing URLs: the organization overview and budgets."""

from django.urls import path

from .views import budgets, overview

urlpatterns = [
    path("orgs/<slug:slug>/billing/", overview.billing_overview_page, name="billing-overview"),
    path("orgs/<slug:slug>/billing/budgets/", budgets.budgets_page, name="billing-budgets"),
    path(
        "orgs/<slug:slug>/billing/budgets/<int:budget_id>/delete/",
        budgets.budget_delete_view,
        name="billing-budget-delete",
    ),
]
