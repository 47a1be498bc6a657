"""Forms of the operators' pages. They only check input; the services decide what is allowed."""

from django import forms

from apps.catalog.models import Region


class NodeActionForm(forms.Form):
    reason = forms.CharField(max_length=200, required=False, strip=True)


class RegistrationTokenCreateForm(forms.Form):
    # Every region, not only active ones: hosts are racked and registered before a region opens.
    region = forms.ModelChoiceField(queryset=Region.objects.order_by("code"), to_field_name="code")
    note = forms.CharField(max_length=120, required=False, help_text="e.g. the rack or asset tag of the host")
    ttl_hours = forms.IntegerField(
        label="Valid for (hours)", min_value=1, max_value=24 * 30, initial=24,
        help_text="The token works once, within this time.",
    )
