"""The cards page: list, add (Stripe Elements + a SetupIntent), make default, remove.

The card number goes from the browser to Stripe only; the page then posts the SetupIntent's id,
which the server checks with Stripe before it stores anything."""

from __future__ import annotations

import stripe
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get

from ..models import BillingAccount
from ..selectors.cards import card_get, card_is_expired, cards_list, payment_method_usable_get
from ..services.accounts import billing_account_get_or_create
from ..services.cards import card_default_set, card_remove, card_setup_confirm, card_setup_intent_create
from ..stripe_api import STRIPE_TRANSIENT_ERRORS

CARDS_PARTIAL = "billing/cards/partials/cards.html"
STRIPE_DOWN = "Stripe could not be reached, so nothing was changed. Try again in a minute."


def billing_manage_access(request, slug: str) -> tuple[OrgAccess, BillingAccount]:
    """404 for other tenants; 403 for roles that may not manage billing (owner, admin, billing may)."""
    access = organization_access_get(user=request.user, slug=slug)
    if not access.can_view_billing:
        raise PermissionDenied("Only owners, admins and billing members manage this organization's cards.")
    return access, billing_account_get_or_create(organization=access.organization)


def cards_context(access: OrgAccess, account: BillingAccount) -> dict:
    cards = list(cards_list(account=account))
    for card in cards:
        card.expired = card_is_expired(card=card)
    return {
        "access": access,
        "organization": access.organization,
        "account": account,
        "cards": cards,
        "usable_card": payment_method_usable_get(account=account),
    }


def _cards_answer(request, access, account, status: int = 200):
    template = CARDS_PARTIAL if request.htmx else "billing/cards/cards.html"
    return render(request, template, cards_context(access, account), status=status)


@login_required
def cards_page(request, slug: str):
    access, account = billing_manage_access(request, slug)
    return _cards_answer(request, access, account)


def _add_page(request, access, account, error: str | None = None):
    """The Elements form with a fresh SetupIntent (each attempt gets its own)."""
    context = {"access": access, "organization": access.organization, "error": error}
    try:
        intent = card_setup_intent_create(account=account)
    except STRIPE_TRANSIENT_ERRORS:
        context["error"] = STRIPE_DOWN
        return render(request, "billing/cards/card_add.html", context, status=503)
    context.update(
        client_secret=intent.client_secret,
        publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
        stripe_js_url=settings.STRIPE_JS_URL,
    )
    return render(request, "billing/cards/card_add.html", context, status=400 if error else 200)


@login_required
def card_add_page(request, slug: str):
    access, account = billing_manage_access(request, slug)
    if request.method != "POST":
        return _add_page(request, access, account)
    try:
        card = card_setup_confirm(account=account, setup_intent_id=request.POST.get("setup_intent_id", ""))
    except ValidationError as error:
        return _add_page(request, access, account, error=" ".join(error.messages))
    except STRIPE_TRANSIENT_ERRORS:
        return _add_page(request, access, account, error=STRIPE_DOWN)
    note = " It is the default card." if card.is_default else ""
    messages.success(request, f"Card {card.brand} •••• {card.last4} saved.{note}")
    return redirect("billing-cards", slug=slug)


def _card_action(request, slug: str, card_id: int, action, done: str):
    access, account = billing_manage_access(request, slug)
    card = card_get(account=account, card_id=card_id)
    status = 200
    try:
        action(account=account, card=card)
        messages.success(request, done.format(card=f"{card.brand} •••• {card.last4}"))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        status = 400
    except stripe.StripeError:
        messages.error(request, STRIPE_DOWN)
        status = 503
    account.refresh_from_db()
    if request.htmx:
        return _cards_answer(request, access, account, status=status)
    return redirect("billing-cards", slug=slug)


@login_required
@require_POST
def card_default_view(request, slug: str, card_id: int):
    return _card_action(request, slug, card_id, card_default_set, "{card} is now the default card.")


@login_required
@require_POST
def card_remove_view(request, slug: str, card_id: int):
    return _card_action(request, slug, card_id, card_remove, "{card} removed.")
