"""The operators' node list's filters (the inventory page's filter bar). A value that names
nothing is an error with a reason: the page says which filter it ignored and applies the others.
An operators' API list of nodes would take the same FilterSet as its `filterset_class`."""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from apps.catalog.models import Region

from .models import Node, NodeState

_STATES = ", ".join(NodeState.values)
HEALTH_CHOICES = [("healthy", "Every GPU healthy"), ("unhealthy", "Some GPU degraded or failed")]
SIMULATED_CHOICES = [("false", "Real hosts"), ("true", "Simulated hosts")]


@extend_schema_field(OpenApiTypes.STR)
class RegionCodeFilter(django_filters.ModelChoiceFilter):
    """A region code (typed for the schema, which would otherwise call it an integer)."""


class NodeFilter(django_filters.FilterSet):
    """Over selectors.inventory.nodes_list(), whose `gpus_unhealthy` annotation `health` reads."""

    region = RegionCodeFilter(
        queryset=Region.objects.order_by("code"), to_field_name="code", empty_label="All regions", label="Region",
        error_messages={"invalid_choice": "Unknown region '%(value)s'."},
    )
    state = django_filters.ChoiceFilter(
        choices=NodeState.choices, empty_label="All states", label="State",
        error_messages={"invalid_choice": f"Unknown state '%(value)s'. Use one of: {_STATES}."},
    )
    simulated = django_filters.ChoiceFilter(
        choices=SIMULATED_CHOICES, empty_label="Real and simulated", label="Inventory", method="_by_simulated",
        error_messages={"invalid_choice": "Unknown inventory '%(value)s'. Use true (simulated) or false (real)."},
    )
    health = django_filters.ChoiceFilter(
        choices=HEALTH_CHOICES, empty_label="Any health", label="Health", method="_by_health",
        error_messages={"invalid_choice": "Unknown health '%(value)s'. Use healthy or unhealthy."},
    )

    class Meta:
        model = Node
        fields = ["region", "state", "simulated", "health"]

    def _by_simulated(self, queryset, name, value):
        return queryset.filter(simulated=value == "true")

    def _by_health(self, queryset, name, value):
        return queryset.filter(gpus_unhealthy__gt=0) if value == "unhealthy" else queryset.filter(gpus_unhealthy=0)
