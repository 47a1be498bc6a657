from rest_framework import serializers

from ..models import Flavor, GpuModel, Image, Offering, Price, Region
from ..selectors import CURRENT_PRICES_ATTR, offering_is_launchable


class RegionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Region
        fields = ["code", "name", "country"]


class GpuModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = GpuModel
        fields = ["slug", "name", "memory_gib", "nvml_name"]


class PriceSerializer(serializers.ModelSerializer):
    region = serializers.SlugRelatedField(
        slug_field="code", read_only=True, allow_null=True,
        help_text="The region this price is specific to; null for the list price of all regions.",
    )
    display = serializers.CharField(
        read_only=True, help_text="e.g. '$2.49 / hour, billed per second'"
    )

    class Meta:
        model = Price
        fields = ["unit", "amount", "currency", "region", "valid_from", "display"]
        extra_kwargs = {"amount": {"help_text": "Decimal as a string, never a float."}}


class FlavorSerializer(serializers.ModelSerializer):
    gpu_model = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    prices = PriceSerializer(
        source=CURRENT_PRICES_ATTR, many=True, read_only=True,
        help_text="Current prices, one per unit, for the requested region (or all regions).",
    )

    class Meta:
        model = Flavor
        fields = [
            "slug", "name", "gpu_model", "gpu_count", "slice_kind", "mig_profile", "gpu_fraction",
            "vcpus", "ram_gib", "disk_gib", "served_model", "prices",
        ]


class FlavorWithOfferingSerializer(FlavorSerializer):
    offering = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    offering_kind = serializers.CharField(source="offering.kind", read_only=True)

    class Meta(FlavorSerializer.Meta):
        fields = ["offering", "offering_kind", *FlavorSerializer.Meta.fields]


class OfferingSerializer(serializers.ModelSerializer):
    flavors = FlavorSerializer(many=True, read_only=True)
    launchable = serializers.SerializerMethodField(
        help_text="Whether this cloud can launch it now; false means listed but not yet available."
    )

    class Meta:
        model = Offering
        fields = ["slug", "name", "kind", "description", "launchable", "flavors"]

    def get_launchable(self, offering: Offering) -> bool:
        return offering_is_launchable(offering=offering)


class ImageSerializer(serializers.ModelSerializer):
    offering_kinds = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Image
        fields = ["slug", "name", "description", "offering_kinds"]
