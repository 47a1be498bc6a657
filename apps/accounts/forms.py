from django import forms

from .models import OrganizationKind, Role


class OrganizationCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
    kind = forms.ChoiceField(
        choices=[(OrganizationKind.COMPANY, "Company"), (OrganizationKind.UNIVERSITY, "University")]
    )


class InvitationCreateForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=80)
    role = forms.ChoiceField(choices=[c for c in Role.choices if c[0] != Role.OWNER], initial=Role.MEMBER)
    expires_in_days = forms.IntegerField(
        min_value=1,
        max_value=365,
        required=False,
        initial=90,
        help_text="Leave empty for a key that does not expire.",
    )


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
