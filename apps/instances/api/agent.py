"""The node agents' side of workloads: a long-poll for the desired state (the one channel it
comes on) and per-workload status reports. Authenticated with the node credential, like
heartbeats. The report's states and fields are the shared protocol's (provisioning/protocol.py)."""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response

from apps.capacity.api.authentication import NodeAuthentication
from apps.capacity.api.serializers import HealthCheckReportSerializer
from apps.capacity.api.views import STALE, AgentView, _too_large
from portal.api import error_response
from provisioning import protocol as P

from ..selectors import node_desired_version, node_desired_workloads
from ..services.desired import node_workloads_group
from ..services.reports import InvalidWorkloadReport, StaleWorkloadReport, UnknownWorkload, workload_report_apply

LONG_POLL_MAX_S = 30


def desired_state(node_id) -> dict:
    """The version and the list from one snapshot, so they always belong together (a change
    commits both at once: the version row is bumped at that commit)."""
    connection = transaction.get_connection()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:  # inside a caller's transaction (tests) its snapshot rules apply
            connection.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return {"version": node_desired_version(node_id=node_id), "workloads": node_desired_workloads(node_id=node_id)}


def _node_from(request):
    # The same authentication as the DRF agent views; it reads only the request's headers.
    result = NodeAuthentication().authenticate(request)
    return result[1] if result else None


@csrf_exempt
@require_GET
async def workloads_long_poll(request):
    """Answers at once when the node's desired state differs from `version`, else when it changes,
    else after `wait` seconds. Async, so thousands of waiting agents cost no threads. It is woken
    only by a change of the node's version (services.desired), never by the agent's own reports."""
    try:
        node = await sync_to_async(_node_from)(request)
    except AuthenticationFailed as failed:
        return JsonResponse({"detail": str(failed.detail)}, status=401)
    if node is None:
        return JsonResponse({"detail": "Send 'Authorization: Node <node_id>:<credential>'."}, status=401)
    try:
        seen = int(request.GET.get("version", "0"))
        wait = max(0.0, min(float(request.GET.get("wait", "25")), LONG_POLL_MAX_S))
    except ValueError:
        return JsonResponse({"detail": "version must be an integer and wait a number of seconds."}, status=400)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = node_workloads_group(node.pk)
    await layer.group_add(group, channel)
    try:
        deadline = time.monotonic() + wait
        while True:
            state = await sync_to_async(desired_state)(node.pk)
            remaining = deadline - time.monotonic()
            if state["version"] != seen or remaining <= 0:
                return JsonResponse(state)
            try:
                await asyncio.wait_for(layer.receive(channel), timeout=remaining)
            except TimeoutError:
                pass
            except RedisError:
                # The database is the truth; a channel-layer hiccup only costs the wake-up.
                await asyncio.sleep(min(1.0, max(remaining, 0)))
    finally:
        await layer.group_discard(group, channel)


# The protocol's report fields, one serializer field each (a test keeps the two in step).
class ActivitySerializer(serializers.Serializer):
    last_activity = serializers.DateTimeField(allow_null=True, required=False)
    kernels = serializers.IntegerField(min_value=0, max_value=10_000, required=False)
    busy_kernels = serializers.IntegerField(min_value=0, max_value=10_000, required=False)
    connections = serializers.IntegerField(min_value=0, max_value=100_000, required=False)


class WipedSerializer(serializers.Serializer):
    """What a bare-metal workload's agent removed when it ended (P.F_WIPED, P.wipe_check)."""

    account = serializers.RegexField(P.SSH_USER_PATTERN, allow_null=True)
    home = serializers.CharField(max_length=300)
    files = serializers.IntegerField(min_value=0)


class WorkloadStatusSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=1)
    state = serializers.ChoiceField(choices=list(P.REPORTED_STATES))
    reason = serializers.CharField(max_length=P.REASON_LIMIT, allow_null=True, allow_blank=True, required=False)
    route_slot = serializers.RegexField(P.ROUTE_SLOT_PATTERN, allow_null=True, required=False)
    # The front proxy connects to it: see the protocol's SOCKET_PATTERN for why it is this strict.
    socket = serializers.RegexField(
        P.SOCKET_PATTERN, max_length=P.SOCKET_MAX_LENGTH, allow_null=True, required=False
    )
    pooled = serializers.BooleanField(required=False, default=False)
    started_at = serializers.DateTimeField(allow_null=True, required=False)
    activity = ActivitySerializer(allow_null=True, required=False)
    # An SSH workload's endpoint (P.SSH_ENDPOINT_FIELDS): all four or none, checked as a whole by
    # P.ssh_endpoint_check. Which of endpoint or route a running report needs follows the
    # instance's kind, which only the service knows (InvalidWorkloadReport, a 400 too).
    host = serializers.CharField(max_length=64, allow_null=True, required=False)
    port = serializers.IntegerField(allow_null=True, required=False)
    user = serializers.CharField(max_length=64, allow_null=True, required=False)
    host_key = serializers.CharField(max_length=200, allow_null=True, required=False)
    # Bare metal only: the hand-over health check of a failed start, and what a stop wiped.
    health_check = HealthCheckReportSerializer(allow_null=True, required=False)
    wiped = WipedSerializer(allow_null=True, required=False)

    def validate_socket(self, value):
        if value and any(part in (".", "..") for part in value.split("/")):
            raise serializers.ValidationError("The socket path may not hold . or .. parts.")
        return value

    def validate(self, data):
        check = data.get(P.F_HEALTH_CHECK)
        if check is not None and (data["state"] != P.FAILED or check["passed"]):
            raise serializers.ValidationError("Only a failed report carries a health check, and only a failed one.")
        if data.get(P.F_WIPED) is not None and data["state"] not in (P.STOPPED, P.FAILED):
            raise serializers.ValidationError("Only a stopped or failed report says what was wiped.")
        given = [field for field in P.SSH_ENDPOINT_FIELDS if data.get(field) is not None]
        if given and data["state"] != P.RUNNING:
            raise serializers.ValidationError("Only a running report carries an SSH endpoint.")
        if given and len(given) != len(P.SSH_ENDPOINT_FIELDS):
            missing = ", ".join(f for f in P.SSH_ENDPOINT_FIELDS if f not in given)
            raise serializers.ValidationError(f"An SSH endpoint needs all of its fields; missing: {missing}.")
        if given:
            try:
                endpoint = P.ssh_endpoint_check(*(data[field] for field in P.SSH_ENDPOINT_FIELDS))
            except ValueError as bad:
                raise serializers.ValidationError(str(bad)) from bad
            data.update(zip(P.SSH_ENDPOINT_FIELDS, endpoint, strict=True))
        elif data["state"] == P.RUNNING and not (data.get(P.F_ROUTE_SLOT) and data.get(P.F_SOCKET)):
            raise serializers.ValidationError(
                "A running report needs route_slot and socket (a notebook) or host, port, user and host_key (SSH)."
            )
        return data


class WorkloadAcceptedSerializer(serializers.Serializer):
    instance_state = serializers.CharField(help_text="The instance's lifecycle state after the report.")


class WorkloadStatusView(AgentView):
    @extend_schema(
        request=WorkloadStatusSerializer,
        responses={
            202: WorkloadAcceptedSerializer,
            400: error_response("The report does not fit the workload's kind."),
            404: error_response("No such workload on this node."),
            409: STALE,
        },
    )
    def post(self, request, instance_id):
        if (response := _too_large(request)) is not None:
            return response
        payload = WorkloadStatusSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            instance = workload_report_apply(node=request.auth, instance_id=instance_id, **payload.validated_data)
        except UnknownWorkload as unknown:
            return Response({"detail": str(unknown)}, status=status.HTTP_404_NOT_FOUND)
        except StaleWorkloadReport as stale:
            return Response({"detail": str(stale)}, status=status.HTTP_409_CONFLICT)
        except InvalidWorkloadReport as invalid:
            return Response({"detail": str(invalid)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"instance_state": instance.state}, status=status.HTTP_202_ACCEPTED)


# Mounted under /api/v1/agent/ by portal/urls.py, next to capacity's register/heartbeat/telemetry.
urlpatterns = [
    path("workloads", workloads_long_poll, name="agent-workloads"),
    path("workloads/<uuid:instance_id>/status", WorkloadStatusView.as_view(), name="agent-workload-status"),
]
