"""The reservation request form. It only parses input; services.reservations decides whether the
window can be met, and its refusal is shown as the form's error."""

from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from apps.catalog.models import Flavor, Region, SliceKind

COUNT_KINDS = [("gpus", "GPUs"), ("whole_nodes", "Whole nodes")]


def reservable_flavors() -> QuerySet[Flavor]:
    """Whole-GPU flavors of public offerings: what can be reserved."""
    return (
        Flavor.objects.filter(slice_kind=SliceKind.WHOLE, gpu_model__isnull=False, offering__is_public=True)
        .select_related("offering", "gpu_model")
        .order_by("offering__sort_order", "sort_order", "id")
    )


class FlavorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, flavor: Flavor) -> str:
        return f"{flavor.offering.name} · {flavor.name} ({flavor.accelerator_label})"


class ReservationForm(forms.Form):
    flavor = FlavorChoiceField(queryset=reservable_flavors())
    region = forms.ModelChoiceField(queryset=Region.objects.filter(is_active=True), to_field_name="code")
    count = forms.IntegerField(label="How many", min_value=1, max_value=4096, initial=1)
    count_kind = forms.ChoiceField(label="Of", choices=COUNT_KINDS, initial="gpus")
    starts_at = forms.DateTimeField(
        label="Starts (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    ends_at = forms.DateTimeField(
        label="Ends (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )

    def request(self) -> dict:
        """The cleaned form as reservation_request's arguments."""
        data = self.cleaned_data
        return {
            "flavor": data["flavor"],
            "region": data["region"],
            "starts_at": data["starts_at"],
            "ends_at": data["ends_at"],
            data["count_kind"]: data["count"],
        }
