"""Admin for looking things up. State and allocation changes go through the services (the
operators' pages), which keep the event log and the allocation invariants; here they are read-only."""

from django.contrib import admin

from .models import (
    Allocation,
    AllocationSlice,
    Gpu,
    MigDevice,
    Node,
    NodeEvent,
    Quota,
    RegistrationToken,
    Reservation,
    ReservationEvent,
)


class GpuInline(admin.TabularInline):
    model = Gpu
    extra = 0
    can_delete = False
    fields = ["index", "uuid", "name", "gpu_model", "health", "mig_enabled", "allocated_milli", "utilization_pct"]
    readonly_fields = fields
    show_change_link = True


class NodeEventInline(admin.TabularInline):
    model = NodeEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "from_state", "to_state", "reason", "actor"]
    readonly_fields = fields
    ordering = ["-created_at"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "region", "simulated", "state", "last_heartbeat_at", "registered_at"]
    list_filter = ["region", "state", "simulated"]
    list_select_related = ["region"]
    search_fields = ["hostname", "id"]
    # The credential digest and the agent's counters are the agent protocol's; state has a service.
    readonly_fields = [
        "id", "state", "state_reason", "state_changed_at", "credential_hash", "simulated", "registered_at",
        "last_heartbeat_at", "last_seq", "last_telemetry_seq",
    ]
    inlines = [GpuInline, NodeEventInline]


class MigDeviceInline(admin.TabularInline):
    model = MigDevice
    extra = 0
    can_delete = False
    readonly_fields = ["uuid", "profile", "memory_bytes", "present"]


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["uuid", "node", "index", "name", "health", "allocated_milli", "utilization_pct"]
    list_filter = ["health", "mig_enabled", "gpu_model"]
    list_select_related = ["node"]
    search_fields = ["uuid", "node__hostname", "name"]
    readonly_fields = ["uuid", "node", "allocated_milli", "telemetry_at"]
    inlines = [MigDeviceInline]


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    list_display = ["region", "note", "created_by", "created_at", "expires_at", "used_at", "node"]
    list_filter = ["region"]
    list_select_related = ["region", "created_by", "node"]
    # Tokens are created on the operators' page, which shows the secret once; a digest is all there is.
    readonly_fields = ["token_hash", "created_by", "created_at", "used_at", "node"]

    def has_add_permission(self, request):
        return False


class AllocationSliceInline(admin.TabularInline):
    model = AllocationSlice
    extra = 0
    can_delete = False
    readonly_fields = ["gpu", "mig_device", "milli", "live"]


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["pk", "organization", "flavor", "node", "state", "gpu_milli", "holder", "created_at"]
    list_filter = ["state"]
    list_select_related = ["organization", "flavor", "node"]
    search_fields = ["holder", "organization__slug", "node__hostname"]
    readonly_fields = [f.name for f in Allocation._meta.fields]
    inlines = [AllocationSliceInline]

    def has_add_permission(self, request):
        return False


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["organization", "project", "guaranteed_gpus", "max_gpus"]
    list_select_related = ["organization", "project"]
    search_fields = ["organization__slug"]


class ReservationEventInline(admin.TabularInline):
    model = ReservationEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "from_state", "to_state", "reason", "actor"]
    readonly_fields = fields


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    """Read-only: bookings go through services.reservations (the feasibility check and its lock)."""

    list_display = ["id", "organization", "region", "gpu_model", "gpus", "whole_nodes", "starts_at", "ends_at", "state"]
    list_filter = ["state", "region"]
    list_select_related = ["organization", "region", "gpu_model"]
    search_fields = ["organization__slug"]
    readonly_fields = [f.name for f in Reservation._meta.fields]
    inlines = [ReservationEventInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
