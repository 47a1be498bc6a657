from dataclasses import dataclass
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

from .services import personal_organization_ensure


@dataclass(frozen=True)
class PortalSite:
    """What allauth's mail calls `current_site`: the product's name (settings.SITE_NAME) and the
    public host. Without django.contrib.sites allauth would use the request's host for both, and
    a mail would greet the reader with "Hello from 127.0.0.1:8000!"."""

    name: str
    domain: str


def portal_site() -> PortalSite:
    return PortalSite(name=settings.SITE_NAME, domain=urlsplit(settings.PORTAL_BASE_URL).netloc)


class AccountAdapter(DefaultAccountAdapter):
    """Hooks allauth's sign-up into the portal: every new user gets a personal organization."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            personal_organization_ensure(user=user)
        return user

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        super().send_mail(template_prefix, email, {**context, "current_site": portal_site(),
                                                   "base_url": settings.PORTAL_BASE_URL})
