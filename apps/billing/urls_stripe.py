"""Billing URLs: Stripe (cards, top-ups, the webhook endpoint)."""

from django.urls import path

from .views import cards, topups, webhooks

urlpatterns = [
    # Fixed path: Stripe's dashboard (and localstripe, devtools/stripe_local.WEBHOOK_PATH) point here.
    path("billing/stripe/webhook/", webhooks.stripe_webhook, name="stripe-webhook"),
    path("orgs/<slug:slug>/billing/cards/", cards.cards_page, name="billing-cards"),
    path("orgs/<slug:slug>/billing/cards/add/", cards.card_add_page, name="billing-card-add"),
    path("orgs/<slug:slug>/billing/cards/<int:card_id>/default/", cards.card_default_view, name="billing-card-default"),
    path("orgs/<slug:slug>/billing/cards/<int:card_id>/remove/", cards.card_remove_view, name="billing-card-remove"),
    path("orgs/<slug:slug>/billing/topup/", topups.topup_page, name="billing-topup"),
]
