"""Shapes of the chargeback API's answers. Money and hours are decimal strings, never floats."""

from __future__ import annotations

from rest_framework import serializers


def _decimal(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=24, decimal_places=4, coerce_to_string=True, **kwargs)


class KeySerializer(serializers.Serializer):
    dimension = serializers.CharField(help_text="project, owner, instance, offering, flavor, region or label:<key>")
    value = serializers.CharField(
        allow_null=True,
        help_text="A stable value to filter or drill down by: the id (project, user, offering, flavor, region), "
        "the instance's UUID (reservation:<uuid> for a reservation), or the label's value; null for no label.",
    )
    name = serializers.CharField(help_text="What people read: a name, an email, a label value or (none).")


class RowSerializer(serializers.Serializer):
    keys = KeySerializer(many=True, help_text="One per group_by dimension, in order; empty for the total.")
    seconds = serializers.IntegerField(help_text="Billed seconds, corrections included.")
    hours = _decimal()
    allocated_gpu_hours = _decimal(help_text="GPUs held × hours; fractions and MIG slices count by their share.")
    used_gpu_hours = _decimal(help_text="Of those, used according to NVML utilisation.")
    utilisation_pct = serializers.DecimalField(
        max_digits=8,
        decimal_places=1,
        coerce_to_string=True,
        allow_null=True,
        help_text="used / allocated × 100; null when nothing was allocated.",
    )
    cost = serializers.DecimalField(
        max_digits=18,
        decimal_places=2,
        coerce_to_string=True,
        help_text="Per instance (or reservation) and unit price rounded once, as on the invoice; then summed.",
    )
    currency = serializers.CharField()


class _RangeSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First UTC day.")
    end = serializers.DateField(help_text="Last UTC day, inclusive.")
    currency = serializers.CharField()


class ReportPageSerializer(_RangeSerializer):
    group_by = serializers.ListField(child=serializers.CharField())
    labels = serializers.DictField(child=serializers.CharField(), help_text="The label filters applied.")
    total = RowSerializer(help_text="The whole range's total (all pages); equals the invoices' usage lines.")
    count = serializers.IntegerField(help_text="Rows over all pages.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = RowSerializer(many=True)


class SeriesSerializer(serializers.Serializer):
    key = KeySerializer(allow_null=True, help_text="null for the total or for Other (series folded by top).")
    name = serializers.CharField()
    cost = serializers.ListField(child=serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True))
    allocated_gpu_hours = serializers.ListField(child=_decimal())
    used_gpu_hours = serializers.ListField(child=_decimal())


class DailySerializer(_RangeSerializer):
    group_by = serializers.ListField(child=serializers.CharField())
    days = serializers.ListField(child=serializers.DateField(), help_text="Every UTC day of the range.")
    series = SeriesSerializer(many=True, help_text="One per value of the first group_by dimension, biggest first.")


class IdleHolderSerializer(serializers.Serializer):
    instance = serializers.UUIDField(source="instance_id")
    instance_name = serializers.CharField()
    state = serializers.CharField(source="instance_state")
    owner = serializers.IntegerField(source="owner_id")
    owner_name = serializers.CharField()
    project = serializers.IntegerField(source="project_id")
    project_name = serializers.CharField()
    flavor_name = serializers.CharField()
    allocated_gpu_hours = _decimal()
    used_gpu_hours = _decimal()
    wasted_gpu_hours = _decimal()
    utilisation_pct = serializers.DecimalField(max_digits=8, decimal_places=1, coerce_to_string=True)
    cost = serializers.DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True)
    currency = serializers.CharField()


class IdlePageSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField(help_text="Last UTC day, inclusive.")
    below_pct = serializers.DecimalField(max_digits=8, decimal_places=2, coerce_to_string=True)
    min_hours = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = IdleHolderSerializer(many=True)
