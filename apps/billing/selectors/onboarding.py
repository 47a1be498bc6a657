"""The first-run checklist of a signed-in user in an organization, read from real state.

Billing reads it because it is the one app high enough to see all four facts: the user's verified
address (accounts), a card or credits (billing), a notebook launched (instances) and an API key
(accounts). One query for the four, one for the dismissal.
"""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.db.models import Exists, OuterRef

from apps.accounts.models import ApiKey, Organization
from apps.catalog.models import OfferingKind
from apps.instances.models import Instance

from ..models import CreditGrant, OnboardingDismissal, PaymentMethod


@dataclass(frozen=True)
class OnboardingStep:
    key: str
    done: bool


@dataclass(frozen=True)
class OnboardingChecklist:
    email_verified: bool
    payment_ready: bool  # a card on file, or credits redeemed
    notebook_launched: bool
    api_key_created: bool
    dismissed: bool

    @property
    def steps(self) -> list[OnboardingStep]:
        return [
            OnboardingStep("email", self.email_verified),
            OnboardingStep("payment", self.payment_ready),
            OnboardingStep("notebook", self.notebook_launched),
            OnboardingStep("api_key", self.api_key_created),
        ]

    @property
    def complete(self) -> bool:
        return all(step.done for step in self.steps)

    @property
    def visible(self) -> bool:
        return not (self.dismissed or self.complete)


def onboarding_checklist_get(*, user, organization: Organization) -> OnboardingChecklist:
    facts = (
        Organization.objects.filter(pk=organization.pk)
        .annotate(
            email_verified=Exists(EmailAddress.objects.filter(user_id=user.pk, verified=True)),
            has_card=Exists(
                PaymentMethod.objects.filter(account__organization=OuterRef("pk"), detached_at__isnull=True)
            ),
            has_credits=Exists(CreditGrant.objects.filter(account__organization=OuterRef("pk"))),
            notebook_launched=Exists(
                Instance.objects.filter(organization=OuterRef("pk"), offering__kind=OfferingKind.NOTEBOOK)
            ),
            api_key_created=Exists(ApiKey.objects.filter(organization=OuterRef("pk"))),
            dismissed=Exists(OnboardingDismissal.objects.filter(user_id=user.pk)),
        )
        .values("email_verified", "has_card", "has_credits", "notebook_launched", "api_key_created", "dismissed")
        .get()
    )
    return OnboardingChecklist(
        email_verified=facts["email_verified"],
        payment_ready=facts["has_card"] or facts["has_credits"],
        notebook_launched=facts["notebook_launched"],
        api_key_created=facts["api_key_created"],
        dismissed=facts["dismissed"],
    )
