"""REST API v1 for reservations, under /api/v1/organizations/{slug}/reservations/: list, book (400
with the reason when it cannot be met), one, cancel. Scoped like instances: the caller's
organization; another tenant's reservation is 404. Thin: services book and cancel, selectors read."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.api.access import OrganizationScopedMixin
from apps.accounts.models import Project
from apps.catalog.models import Flavor, Region

from ..models import Reservation
from ..selectors.reservations import reservation_get, reservations_list
from ..services.reservations import reservation_cancel, reservation_request


class ReservationSerializer(serializers.ModelSerializer):
    flavor = serializers.SerializerMethodField()
    region = serializers.SlugRelatedField(slug_field="code", read_only=True)
    gpu_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    hourly_amount = serializers.DecimalField(max_digits=12, decimal_places=6, read_only=True)

    class Meta:
        model = Reservation
        fields = [
            "id",
            "state",
            "reason",
            "state_changed_at",
            "flavor",
            "region",
            "gpu_model",
            "gpus",
            "whole_nodes",
            "starts_at",
            "ends_at",
            "project",
            "units",
            "hourly_amount",
            "currency",
            "created_at",
        ]
        read_only_fields = fields

    def get_flavor(self, reservation) -> str:
        return f"{reservation.flavor.offering.slug}/{reservation.flavor.slug}"


class ReservationRequestSerializer(serializers.Serializer):
    flavor = serializers.CharField(help_text="<offering slug>/<flavor slug> of a whole-GPU flavor")
    region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.filter(is_active=True))
    gpus = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=4096,
        help_text="whole GPUs of the flavor's model (a multiple of its GPU count); or give whole_nodes",
    )
    whole_nodes = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=4096)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    project = serializers.SlugField(required=False, help_text="a project slug; default: the first project")

    def validate_flavor(self, value: str) -> Flavor:
        offering_slug, _, flavor_slug = value.partition("/")
        flavor = (
            Flavor.objects.select_related("offering", "gpu_model")
            .filter(offering__slug=offering_slug, slug=flavor_slug)
            .first()
        )
        if flavor is None:
            raise serializers.ValidationError(f"No flavor {value!r}; see /api/v1/catalog/flavors/.")
        return flavor


class ReservationViewSet(OrganizationScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = ReservationSerializer
    queryset = Reservation.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "uuid"

    def get_queryset(self):
        return reservations_list(organization=self.access.organization)

    def retrieve(self, request, org_slug, pk):
        return Response(
            ReservationSerializer(reservation_get(organization=self.access.organization, reservation_id=pk)).data
        )

    @extend_schema(
        request=ReservationRequestSerializer,
        responses={
            201: OpenApiResponse(ReservationSerializer, description="Booked: the capacity is promised for the window."),
            400: OpenApiResponse(description="Bad input, or the window cannot be met: {'detail': [reason]}."),
        },
    )
    def create(self, request, org_slug):
        payload = ReservationRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        project_slug = data.pop("project", None)
        if project_slug:
            data["project"] = Project.objects.filter(organization=self.access.organization, slug=project_slug).first()
            if data["project"] is None:
                raise ValidationError({"project": f"No project {project_slug!r} in this organization."})
        reservation = reservation_request(access=self.access, **data)
        return Response(ReservationSerializer(reservation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ReservationSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, org_slug, pk):
        reservation = reservation_get(organization=self.access.organization, reservation_id=pk)
        reservation_cancel(access=self.access, reservation_id=reservation.pk)
        return Response(
            ReservationSerializer(reservation_get(organization=self.access.organization, reservation_id=pk)).data
        )
