"""The launch page's question to billing, asked before it shows the form: may this organization
launch, and if not, why and where is it fixed? The answer is the launch check's own
(eligibility.billing_launch_eligibility_check, by its error code), said as a title, a reason and a
link the page renders, instead of a sentence with a raw path in it."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from apps.accounts.models import Organization, Project
from apps.instances.hooks import LaunchBlock

from ..models import PaymentTerms
from .accounts import billing_account_get_or_create
from .eligibility import billing_launch_eligibility_check, billing_page_url


def billing_launch_gate(*, organization: Organization, project: Project | None = None) -> LaunchBlock | None:
    try:
        billing_launch_eligibility_check(organization=organization, project=project)
    except ValidationError as refused:
        return _block(organization, refused.code)
    return None


def _block(organization: Organization, code: str | None) -> LaunchBlock:
    name = organization.name
    if code == "billing_overdue":
        return LaunchBlock(
            title="Payments are overdue",
            reason=f"New launches for {name} are paused until the open invoice is paid.",
            action_label="Update the card",
            action_url=billing_page_url("billing-cards", organization),
        )
    if code == "billing_cap_reached":
        return LaunchBlock(
            title="The monthly spending cap is reached",
            reason=f"{name} has spent its monthly cap. An owner, admin or billing member can raise or remove it.",
            action_label="Review budgets",
            action_url=billing_page_url("billing-budgets", organization),
        )
    if billing_account_get_or_create(organization=organization).terms == PaymentTerms.PREPAID:
        return LaunchBlock(
            title="Top up credits to launch",
            reason=f"{name} runs on prepaid credits and has none left.",
            action_label="Top up",
            action_url=billing_page_url("billing-topup", organization),
        )
    return LaunchBlock(
        title="Add a card to launch",
        reason=f"There is no card on file for {name} and no credits left. Add a card (or buy credits), "
        "then come back here to launch.",
        action_label="Add a card",
        action_url=billing_page_url("billing-card-add", organization),
    )
