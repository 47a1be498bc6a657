"""Billing's API, under /api/v1/organizations/<org_slug>/ (see portal/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .budgets import BudgetViewSet
from .cards import CardListView, StandingView
from .invoices import InvoiceViewSet

# Path converters (see portal/api.py): a non-integer id is a 404 before any view.
router = SimpleRouter(use_regex_path=False)
router.register("invoices", InvoiceViewSet, basename="invoice")
router.register("budgets", BudgetViewSet, basename="budget")

urlpatterns = [
    path("billing/cards/", CardListView.as_view(), name="api-billing-cards"),
    path("billing/standing/", StandingView.as_view(), name="api-billing-standing"),
    *router.urls,
]
