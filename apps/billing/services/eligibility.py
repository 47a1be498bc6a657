"""May this organization start new capacity? Asked by apps.instances.policy for every launch and
every start. Each refusal says what to do and where, because the person who reads it is usually
about to launch a notebook, not reading billing docs."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Organization, Project
from portal.ui.money import money_format

from ..models import BillingAccount, Budget, PaymentMethod, PaymentStanding, PaymentTerms
from ..selectors.budgets import credits_available_get
from ..selectors.cards import payment_method_usable_get
from ..selectors.usage import month_bounds, usage_spend_get
from .accounts import billing_account_get_or_create

_OVERDUE = (PaymentStanding.BLOCKED, PaymentStanding.SUSPENDED)


def billing_page_url(name: str, organization: Organization) -> str:
    """Where a reason sends the reader."""
    return reverse(name, kwargs={"slug": organization.slug})


def _payment_refusal(account: BillingAccount, organization: Organization, at: datetime) -> str | None:
    if account.terms == PaymentTerms.INVOICE:
        return None  # an operator approved invoice terms: they pay by transfer, no card needed
    if account.terms == PaymentTerms.CARD and payment_method_usable_get(account=account, at=at) is not None:
        return None
    if credits_available_get(account=account, at=at) > 0:
        return None
    topup = billing_page_url("billing-topup", organization)
    if account.terms == PaymentTerms.PREPAID:
        return (
            f"{organization.name} runs on prepaid credits and has none left. An owner can top up at {topup}, "
            "or ask the university's billing contact for a grant."
        )
    cards = billing_page_url("billing-cards", organization)
    expired = PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True).first()
    why = f"the card on file ({expired}) has expired" if expired else "there is no card on file and no credits left"
    return f"{organization.name} cannot launch: {why}. Add a card at {cards} (or buy credits at {topup})."


def _cap_refusal(organization: Organization, project: Project | None, at: datetime) -> str | None:
    scope = (Q(project__isnull=True) | Q(project=project)) if project is not None else Q(project__isnull=True)
    start, end = month_bounds(at)
    for budget in Budget.objects.filter(scope, organization=organization, hard_cap=True).select_related("project"):
        spend = usage_spend_get(
            organization_id=organization.pk, start=start, end=end, project_id=budget.project_id, now=at
        )
        if spend >= budget.monthly_amount:
            what = f"project {budget.project.name}" if budget.project_id else organization.name
            cap = money_format(budget.monthly_amount, budget.currency)
            spent = money_format(spend, budget.currency)
            return (
                f"The monthly spending cap of {cap} for {what} is reached ({spent} spent since "
                f"{start:%-d %B}). An owner, admin or billing member can raise or remove it at "
                f"{billing_page_url('billing-budgets', organization)}."
            )
    return None


def billing_launch_eligibility_check(*, organization, project=None) -> None:
    """Raise ValidationError with the reason unless `organization` (and `project`) may start new
    capacity now: a way to pay (a usable card or credits; prepaid credits; invoice terms), payments
    not overdue, and no reached hard cap on the organization or the project."""
    at = timezone.now()
    account = billing_account_get_or_create(organization=organization)
    if account.standing in _OVERDUE:
        raise ValidationError(
            f"Payments for {organization.name} are overdue, so new launches are paused. Pay the open invoice "
            f"or update the card at {billing_page_url('billing-cards', organization)}; launches resume as soon "
            "as the payment goes through.",
            code="billing_overdue",
        )
    if reason := _payment_refusal(account, organization, at):
        raise ValidationError(reason, code="billing_no_payment_method")
    if reason := _cap_refusal(organization, project, at):
        raise ValidationError(reason, code="billing_cap_reached")
