"""Billing pages. Each concern keeps its own URL list; this module joins them."""

from .urls_budgets import urlpatterns as budgets_urls
from .urls_invoices import urlpatterns as invoices_urls
from .urls_onboarding import urlpatterns as onboarding_urls
from .urls_stripe import urlpatterns as stripe_urls

urlpatterns = [*stripe_urls, *invoices_urls, *budgets_urls, *onboarding_urls]
