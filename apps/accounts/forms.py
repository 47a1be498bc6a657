from django import forms

from .labels import labels_format, labels_parse
from .models import OrganizationKind, Role

LABELS_HELP = (
    "key=value pairs separated by commas, e.g. cost-centre=CC-104, team=ml. Chargeback groups and filters by them."
)


class LabelsField(forms.CharField):
    """Labels typed as `key=value, key=value`: cleaned to a dict by the one label rule
    (apps.accounts.labels), every bad pair its own error; a dict as initial shows as that text."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", LABELS_HELP)
        kwargs.setdefault("label", "Labels")
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return labels_format(value) if isinstance(value, dict) else value

    def clean(self, value):
        return labels_parse(super().clean(value))


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
    labels = LabelsField()


class ProjectLabelsForm(forms.Form):
    labels = LabelsField()
