"""Dismissing the first-run checklist: once, for good."""

from __future__ import annotations

from ..models import OnboardingDismissal


def onboarding_dismiss(*, user) -> None:
    OnboardingDismissal.objects.get_or_create(user=user)
