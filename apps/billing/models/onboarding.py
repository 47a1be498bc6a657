"""A user's first-run checklist, dismissed once and for all (the checklist itself is computed)."""

from django.conf import settings
from django.db import models


class OnboardingDismissal(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    dismissed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"onboarding dismissed by {self.user_id}"
