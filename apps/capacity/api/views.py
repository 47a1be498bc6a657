"""The node agents' API. Thin: validate the report, hand it to apps.capacity.services.reports."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from portal.api import PortalApiMixin, error_response

from ..services.reports import (
    ReportRejected,
    node_heartbeat_report_apply,
    node_register,
    node_telemetry_apply,
)
from .authentication import IsNodeAgent, NodeAuthentication
from .serializers import (
    HeartbeatReplySerializer,
    HeartbeatSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    TelemetryAcceptedSerializer,
    TelemetrySerializer,
)


def _too_large(request) -> Response | None:
    limit = settings.CAPACITY_AGENT_MAX_BODY_BYTES
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit or len(request.body) > limit:
        return Response({"detail": f"Report too large: at most {limit} bytes."}, status=413)
    return None


STALE = error_response("A report with this or a higher seq was already accepted.")


def _rejected(error: ReportRejected) -> Response:
    return Response({"detail": error.message}, status=error.status)


class AgentView(PortalApiMixin, APIView):
    # Reports relay machine text (a process's failure output may hold escape codes); DRF's
    # CharField still refuses NUL, which PostgreSQL cannot store.
    body_text_checked = False
    authentication_classes = [NodeAuthentication]
    permission_classes = [IsNodeAgent]


class RegisterView(PortalApiMixin, APIView):
    body_text_checked = False  # as AgentView
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "agent-register"

    @extend_schema(
        request=RegisterSerializer,
        responses={201: RegisteredSerializer, 401: error_response("Unknown, used or expired registration token.")},
    )
    def post(self, request):
        if (response := _too_large(request)) is not None:
            return response
        payload = RegisterSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            node, credential = node_register(**payload.validated_data)
        except ReportRejected as error:
            return _rejected(error)
        body = {"node_id": node.pk, "credential": credential, "heartbeat_interval_s": node.heartbeat_interval_s}
        return Response(RegisteredSerializer(body).data, status=status.HTTP_201_CREATED)


class HeartbeatView(AgentView):
    @extend_schema(request=HeartbeatSerializer, responses={200: HeartbeatReplySerializer, 409: STALE})
    def post(self, request):
        if (response := _too_large(request)) is not None:
            return response
        payload = HeartbeatSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        inventory, telemetry = data.get("inventory"), data.get("telemetry")
        try:
            node, updated = node_heartbeat_report_apply(
                node=request.auth, seq=data["seq"], inventory=inventory, telemetry=telemetry
            )
        except ReportRejected as error:
            return _rejected(error)
        # Liveness only: the desired workloads have one channel, the long-poll of apps.instances.
        body = {"heartbeat_interval_s": node.heartbeat_interval_s}
        if updated is not None:  # tells the agent this portal takes telemetry in the heartbeat
            body["gpus_updated"] = updated
        return Response(body)


class TelemetryView(AgentView):
    @extend_schema(request=TelemetrySerializer, responses={202: TelemetryAcceptedSerializer, 409: STALE})
    def post(self, request):
        if (response := _too_large(request)) is not None:
            return response
        payload = TelemetrySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            updated = node_telemetry_apply(node=request.auth, **payload.validated_data)
        except ReportRejected as error:
            return _rejected(error)
        return Response({"gpus_updated": updated}, status=status.HTTP_202_ACCEPTED)
