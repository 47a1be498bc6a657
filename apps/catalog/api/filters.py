"""Query filters of the catalog API. A value that names nothing is a 400 with a reason: a typo
in a filter must not look like an empty catalog."""

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from ..models import Flavor, GpuModel, Image, Offering, OfferingKind, Region
from ..selectors import offering_flavors_prefetch, prices_current_prefetch, regions_active_list

_KINDS = ", ".join(OfferingKind.values)
KIND_ERROR = {"invalid_choice": f"Unknown offering kind '%(value)s'. Use one of: {_KINDS}."}


def _unknown(what: str, listing: str) -> dict[str, str]:
    return {"invalid_choice": f"Unknown {what} '%(value)s'. See /api/v1/catalog/{listing}/."}


@extend_schema_field(OpenApiTypes.STR)
class RegionCodeFilter(django_filters.ModelChoiceFilter):
    """A region code; typed for the schema, which cannot infer it through a filter method."""


class _RegionPricesMixin(django_filters.FilterSet):
    """`?region=<code>` picks which region's prices are shown; it never hides rows.

    Subclasses swap the view's list-price prefetch for the region's in filter_queryset.
    """

    region = RegionCodeFilter(
        queryset=regions_active_list(), to_field_name="code", method="_region_noop",
        label="Region code whose prices to show (default: list prices of all regions)",
        error_messages=_unknown("region", "regions"),
    )

    def _region_noop(self, queryset, name, value):
        return queryset  # applied in filter_queryset, which also runs when the filter is absent

    @property
    def selected_region(self) -> Region | None:
        return self.form.cleaned_data.get("region")


class OfferingFilter(_RegionPricesMixin):
    kind = django_filters.ChoiceFilter(choices=OfferingKind.choices, error_messages=KIND_ERROR)

    class Meta:
        model = Offering
        fields = ["kind", "region"]

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.selected_region is None:
            return queryset  # the view's queryset already carries the list prices
        return queryset.prefetch_related(None).prefetch_related(
            offering_flavors_prefetch(region=self.selected_region)
        )


class FlavorFilter(_RegionPricesMixin):
    kind = django_filters.ChoiceFilter(
        field_name="offering__kind", choices=OfferingKind.choices, error_messages=KIND_ERROR,
        label="Offering kind",
    )
    offering = django_filters.ModelChoiceFilter(
        field_name="offering", queryset=Offering.objects.filter(is_public=True),
        to_field_name="slug", error_messages=_unknown("offering", "offerings"),
        label="Offering slug",
    )
    gpu_model = django_filters.ModelChoiceFilter(
        field_name="gpu_model", queryset=GpuModel.objects.all(), to_field_name="slug",
        error_messages=_unknown("GPU model", "gpu-models"),
        label="GPU model slug",
    )

    class Meta:
        model = Flavor
        fields = ["kind", "offering", "gpu_model", "region"]

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.selected_region is None:
            return queryset
        return queryset.prefetch_related(None).prefetch_related(
            prices_current_prefetch(region=self.selected_region)
        )


class ImageFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(
        choices=OfferingKind.choices, method="_by_kind", error_messages=KIND_ERROR,
        label="Only images for this offering kind",
    )

    class Meta:
        model = Image
        fields = ["kind"]

    def _by_kind(self, queryset, name, value):
        return queryset.filter(offering_kinds__contains=[value])
