from allauth.account.adapter import DefaultAccountAdapter

from .services import personal_organization_ensure


class AccountAdapter(DefaultAccountAdapter):
    """Hooks allauth's sign-up into the portal: every new user gets a personal organization."""

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            personal_organization_ensure(user=user)
        return user
