from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.api.serializers import LabelsField
from apps.catalog.models import Flavor, Image, Region

from ..models import Instance, InstanceEvent
from ..ssh_endpoint import instance_ssh_endpoint


class InstanceEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = InstanceEvent
        fields = ["created_at", "from_state", "to_state", "message", "source"]


class SshEndpointSerializer(serializers.Serializer):
    """How to log in to a running SSH instance (apps.instances.ssh_endpoint, as its page shows it)."""

    host = serializers.CharField()
    port = serializers.IntegerField()
    user = serializers.CharField()
    command = serializers.CharField(help_text="e.g. ssh -p 22001 nc-0123456789ab@10.0.0.7")
    known_hosts = serializers.CharField(
        allow_null=True, help_text="a ~/.ssh/known_hosts line with the instance's host key"
    )


class InstanceSerializer(serializers.ModelSerializer):
    offering = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    flavor = serializers.SerializerMethodField()
    image = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    region = serializers.SlugRelatedField(slug_field="code", read_only=True)
    owner = serializers.EmailField(source="owner.email", read_only=True)
    node = serializers.CharField(source="node.hostname", read_only=True, default=None, allow_null=True)
    node_simulated = serializers.BooleanField(source="node.simulated", read_only=True, default=None, allow_null=True)
    notebook_url = serializers.SerializerMethodField()
    ssh = serializers.SerializerMethodField()
    labels = LabelsField(read_only=True, help_text="Its own labels (PATCH to set them); they override its project's.")

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "state",
            "state_reason",
            "state_changed_at",
            "offering",
            "flavor",
            "image",
            "region",
            "owner",
            "node",
            "node_simulated",
            "created_at",
            "notebook_url",
            "ssh",
            "labels",
        ]

    def get_flavor(self, instance) -> str:
        return f"{instance.offering.slug}/{instance.flavor.slug}"

    def get_notebook_url(self, instance) -> str | None:
        runtime = getattr(instance, "runtime", None)
        if instance.state == "running" and runtime is not None and runtime.route_slot:
            return f"/nb/{runtime.route_slot}/lab"
        return None

    @extend_schema_field(SshEndpointSerializer(allow_null=True))
    def get_ssh(self, instance) -> dict | None:
        """The SSH endpoint while it runs (null otherwise, and for notebooks)."""
        endpoint = instance_ssh_endpoint(instance=instance)
        return endpoint.as_dict() if endpoint else None


class InstanceLabelsSerializer(serializers.Serializer):
    """PATCH of an instance: its labels, replaced whole (send {} to clear them)."""

    labels = LabelsField()


class InstanceDetailSerializer(InstanceSerializer):
    events = InstanceEventSerializer(many=True, read_only=True)

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "events"]


class LaunchSerializer(serializers.Serializer):
    flavor = serializers.CharField(help_text="<offering slug>/<flavor slug>, as the catalog API lists them")
    image = serializers.SlugRelatedField(slug_field="slug", queryset=Image.objects.all())
    region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.filter(is_active=True))
    name = serializers.CharField(max_length=63)
    ssh_keys = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        max_length=50,
        default=list,
        help_text="For GPU instances (gpu_slice): ids of your own SSH keys that may log in; at least one.",
    )
    queue = serializers.BooleanField(
        default=False,
        help_text="Wait for capacity if none is free: answered 202 with the instance queued, instead of 409.",
    )
    reservation = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="Launch into this reservation of yours: refused (400) unless it has started and is of the "
        "flavor's GPU model and region.",
    )

    def validate_flavor(self, value: str) -> Flavor:
        offering_slug, _, flavor_slug = value.partition("/")
        flavor = (
            Flavor.objects.select_related("offering").filter(offering__slug=offering_slug, slug=flavor_slug).first()
        )
        if flavor is None:
            raise serializers.ValidationError(f"No flavor {value!r}; see /api/v1/catalog/flavors/.")
        return flavor


class RegionAvailabilitySerializer(serializers.Serializer):
    region = serializers.CharField(help_text="region code")
    name = serializers.CharField()
    available = serializers.IntegerField(help_text="how many of the flavor could be placed there now")


class NoCapacitySerializer(serializers.Serializer):
    """409: nothing of the flavor is free in the region; nothing was created."""

    reason = serializers.CharField(help_text="no_capacity")
    detail = serializers.CharField()
    availability = RegionAvailabilitySerializer(many=True, help_text="the flavor's availability in every region")
