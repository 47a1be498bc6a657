"""The agent wire format (provisioning/agent/client.py documents the same), validated strictly so
a malformed report is refused whole and never half-applied."""

from rest_framework import serializers

from provisioning.protocol import ssh_ports_check

MAX_GPUS_PER_NODE = 64
MAX_MIG_DEVICES_PER_GPU = 7 * 8

UUID_FIELD = {"max_length": 96, "allow_blank": False}


class MigDeviceReportSerializer(serializers.Serializer):
    uuid = serializers.RegexField(r"^MIG-[A-Za-z0-9-]+$", max_length=96)
    profile = serializers.RegexField(r"^[1-7]g\.[0-9]+gb(\+me)?$", max_length=16, allow_null=True, required=False)
    memory_bytes = serializers.IntegerField(min_value=0, allow_null=True, required=False)


class GpuReportSerializer(serializers.Serializer):
    uuid = serializers.RegexField(r"^GPU-[A-Za-z0-9-]+$", max_length=96)
    index = serializers.IntegerField(min_value=0, max_value=MAX_GPUS_PER_NODE - 1)
    name = serializers.CharField(max_length=96)
    memory_bytes = serializers.IntegerField(min_value=0)
    pci_bus_id = serializers.CharField(max_length=32, allow_blank=True, allow_null=True, required=False)
    mig_mode_current = serializers.BooleanField(allow_null=True, required=False)
    mig_mode_pending = serializers.BooleanField(allow_null=True, required=False)
    mig_devices = serializers.ListField(
        child=MigDeviceReportSerializer(), max_length=MAX_MIG_DEVICES_PER_GPU, required=False
    )
    health = serializers.ChoiceField(choices=["ok", "degraded", "failed"])
    health_reasons = serializers.ListField(child=serializers.CharField(max_length=200), max_length=20, required=False)


class HealthCheckReportSerializer(serializers.Serializer):
    """provisioning/protocol.py F_HEALTH_CHECK; per-GPU details are the agent's, not stored."""

    checked_at = serializers.DateTimeField()
    passed = serializers.BooleanField()
    simulated = serializers.BooleanField()
    cuda_ran = serializers.BooleanField()
    cuda_note = serializers.CharField(max_length=200, allow_blank=True)
    reasons = serializers.ListField(child=serializers.CharField(max_length=300), max_length=64)


class InventoryReportSerializer(serializers.Serializer):
    hostname = serializers.CharField(max_length=255)
    cpus = serializers.IntegerField(min_value=0, max_value=100_000)
    ram_bytes = serializers.IntegerField(min_value=0)
    disk_bytes = serializers.IntegerField(min_value=0)
    driver_version = serializers.CharField(max_length=32, allow_blank=True, allow_null=True, required=False)
    cuda_version = serializers.CharField(max_length=16, allow_blank=True, allow_null=True, required=False)
    simulated = serializers.BooleanField()
    gpus = serializers.ListField(child=GpuReportSerializer(), max_length=MAX_GPUS_PER_NODE)
    # provisioning/protocol.py F_ADDRESS, F_SSH_PORTS: optional, null when the agent has none.
    address = serializers.IPAddressField(allow_null=True, required=False)
    ssh_ports = serializers.ListField(
        child=serializers.IntegerField(), min_length=2, max_length=2, allow_null=True, required=False
    )
    health_check = HealthCheckReportSerializer(allow_null=True, required=False)

    def validate_ssh_ports(self, ports):
        if ports is None:
            return None
        try:
            return list(ssh_ports_check(*ports))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_gpus(self, gpus):
        uuids = [gpu["uuid"] for gpu in gpus]
        if len(set(uuids)) != len(uuids):
            raise serializers.ValidationError("GPU UUIDs must be unique within a report.")
        return gpus


class RegisterSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    inventory = InventoryReportSerializer()


class RegisteredSerializer(serializers.Serializer):
    node_id = serializers.UUIDField()
    credential = serializers.CharField()
    heartbeat_interval_s = serializers.IntegerField()


class GpuTelemetrySerializer(serializers.Serializer):
    uuid = serializers.RegexField(r"^GPU-[A-Za-z0-9-]+$", max_length=96)
    utilization_pct = serializers.IntegerField(min_value=0, max_value=100, allow_null=True, required=False)
    memory_used_bytes = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    temperature_c = serializers.IntegerField(min_value=-50, max_value=200, allow_null=True, required=False)
    power_w = serializers.FloatField(min_value=0, max_value=10_000, allow_null=True, required=False)
    power_limit_w = serializers.FloatField(min_value=0, max_value=10_000, allow_null=True, required=False)
    ecc_uncorrected_volatile = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    xid_errors = serializers.IntegerField(min_value=0, allow_null=True, required=False)


class TelemetryBodySerializer(serializers.Serializer):
    collected_at = serializers.DateTimeField()
    gpus = serializers.ListField(child=GpuTelemetrySerializer(), max_length=MAX_GPUS_PER_NODE)


class HeartbeatSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)
    sent_at = serializers.DateTimeField()
    inventory = InventoryReportSerializer(allow_null=True, required=False)
    # provisioning/protocol.py F_TELEMETRY: the agent's telemetry riding on the heartbeat (one
    # request per interval instead of two); the separate telemetry report stays for older agents.
    telemetry = TelemetryBodySerializer(allow_null=True, required=False)


class HeartbeatReplySerializer(serializers.Serializer):
    heartbeat_interval_s = serializers.IntegerField()
    gpus_updated = serializers.IntegerField(
        required=False, help_text="Only when the heartbeat carried telemetry: how many GPUs it updated."
    )


class TelemetryAcceptedSerializer(serializers.Serializer):
    gpus_updated = serializers.IntegerField()


class TelemetrySerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)
    telemetry = TelemetryBodySerializer()
