"""Buying credits with the default card. The page starts the payment; the credits themselves
come from Stripe's payment_intent.succeeded webhook, never from the browser."""

from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from apps.accounts.views.common import add_service_errors
from portal.ui.money import money_format

from ..models import CreditGrant, CreditKind
from ..selectors.cards import payment_method_usable_get
from ..services.topups import topup_start
from ..stripe_api import STRIPE_TRANSIENT_ERRORS
from .cards import STRIPE_DOWN, billing_manage_access


class TopupForm(forms.Form):
    amount = forms.CharField(label="Amount", max_length=20, widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    # One key per form shown: submitting it twice is one payment (it becomes the Idempotency-Key).
    request_key = forms.CharField(widget=forms.HiddenInput, max_length=32)


def _context(access, account, form, **extra) -> dict:
    return {
        "access": access,
        "organization": access.organization,
        "account": account,
        "form": form,
        "usable_card": payment_method_usable_get(account=account),
        "topups": CreditGrant.objects.filter(account=account, kind=CreditKind.TOPUP).order_by("-created_at")[:10],
        "topup_min": settings.BILLING["TOPUP_MIN"],
        "topup_max": settings.BILLING["TOPUP_MAX"],
        **extra,
    }


@login_required
def topup_page(request, slug: str):
    access, account = billing_manage_access(request, slug)
    if request.method != "POST":
        form = TopupForm(initial={"request_key": uuid.uuid4().hex})
        return render(request, "billing/cards/topup.html", _context(access, account, form))
    form = TopupForm(request.POST)
    if form.is_valid():
        try:
            started = topup_start(
                account=account,
                amount=form.cleaned_data["amount"],
                request_key=form.cleaned_data["request_key"],
                user_id=request.user.pk,
            )
        except ValidationError as error:
            # A refusal is a definite answer (nothing was charged): the next try is a new payment.
            form.data = form.data.copy()
            form.data["request_key"] = uuid.uuid4().hex
            add_service_errors(form, error)
        except STRIPE_TRANSIENT_ERRORS:
            # The answer may be lost, not the payment: a retry with the same key cannot charge twice.
            form.add_error(None, STRIPE_DOWN)
        else:
            if started.client_secret:
                extra = {
                    "started": started,
                    "client_secret": started.client_secret,
                    "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
                    "stripe_js_url": settings.STRIPE_JS_URL,
                }
                return render(request, "billing/cards/topup.html", _context(access, account, form, **extra))
            messages.success(
                request,
                f"Payment of {money_format(started.amount, started.currency)} received: "
                "the credits appear as soon as Stripe confirms it.",
            )
            return redirect("billing-topup", slug=slug)
    return render(request, "billing/cards/topup.html", _context(access, account, form), status=400)
