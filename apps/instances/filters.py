"""The instance list's filters: one FilterSet for the page's filter bar and the API's list
(`filterset_class`), so `?state=running&region=eu-west-1` narrows both the same way.

A value that names nothing is an error with a reason: the API answers 400 (DjangoFilterBackend),
the page says which filter it ignored and applies the others.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from apps.catalog.models import Flavor, Region

from .models import Instance, InstanceState

# The list never shows deleted instances, so offering "Deleted" as a filter would only ever be empty.
LISTED_STATES = [(value, label) for value, label in InstanceState.choices if value != InstanceState.TERMINATED]
_STATES = ", ".join(value for value, _ in LISTED_STATES)


@extend_schema_field(OpenApiTypes.STR)
class RegionCodeFilter(django_filters.ModelChoiceFilter):
    """A region code (typed for the schema, which would otherwise call it an integer)."""


class InstanceFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=LISTED_STATES, empty_label="Any state", label="State",
        error_messages={"invalid_choice": f"Unknown state '%(value)s'. Use one of: {_STATES}."},
    )
    region = RegionCodeFilter(
        queryset=Region.objects.order_by("code"), to_field_name="code", empty_label="Any region", label="Region",
        error_messages={"invalid_choice": "Unknown region '%(value)s'. See /api/v1/catalog/regions/."},
    )
    flavor = django_filters.ModelChoiceFilter(
        queryset=Flavor.objects.select_related("offering").order_by("offering__sort_order", "sort_order", "id"),
        empty_label="Any flavor", label="Flavor",
        error_messages={"invalid_choice": "Unknown flavor '%(value)s': give a flavor's id."},
    )
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=63, label="Name contains")

    class Meta:
        model = Instance
        fields = ["state", "region", "flavor", "name"]
