"""REST API v1 for instances. Thin: services do the work, selectors scope the reads."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.api.access import OrganizationScopedMixin

from .. import selectors
from ..filters import InstanceFilter
from ..models import Instance, InstanceState
from ..services.actions import instance_delete, instance_launch, instance_start, instance_stop
from ..services.labels import instance_labels_set
from ..services.placement import LaunchUnplaceable
from .serializers import (
    InstanceDetailSerializer,
    InstanceLabelsSerializer,
    InstanceSerializer,
    LaunchSerializer,
    NoCapacitySerializer,
)


class InstanceViewSet(OrganizationScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = InstanceSerializer
    queryset = Instance.objects.none()  # names the model for the schema; rows come from get_queryset
    lookup_value_converter = "uuid"
    filterset_class = InstanceFilter  # the list page's filter bar uses the same FilterSet

    def get_queryset(self):
        return selectors.instances_list(access=self.access)

    def _instance(self, pk):
        return selectors.instance_get(access=self.access, instance_id=pk)

    @extend_schema(responses=InstanceDetailSerializer)
    def retrieve(self, request, org_slug, pk):
        return Response(InstanceDetailSerializer(self._instance(pk)).data)

    @extend_schema(
        request=LaunchSerializer,
        responses={
            201: OpenApiResponse(InstanceSerializer, description="Launched: its capacity is held."),
            202: OpenApiResponse(InstanceSerializer, description="Queued (asked with queue=true): no capacity yet."),
            409: OpenApiResponse(NoCapacitySerializer, description="No capacity; availability by region."),
        },
    )
    def create(self, request, org_slug):
        payload = LaunchSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            instance = instance_launch(access=self.access, **payload.validated_data)
        except LaunchUnplaceable as refused:
            return Response(refused.as_dict(), status=status.HTTP_409_CONFLICT)
        queued = instance.state == InstanceState.QUEUED
        return Response(
            InstanceSerializer(instance).data, status=status.HTTP_202_ACCEPTED if queued else status.HTTP_201_CREATED
        )

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, org_slug, pk):
        return Response(InstanceSerializer(instance_stop(access=self.access, instance=self._instance(pk))).data)

    @extend_schema(request=None, responses=InstanceSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, org_slug, pk):
        return Response(InstanceSerializer(instance_start(access=self.access, instance=self._instance(pk))).data)

    @extend_schema(request=InstanceLabelsSerializer, responses=InstanceSerializer)
    def partial_update(self, request, org_slug, pk):
        instance = self._instance(pk)
        payload = InstanceLabelsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        instance = instance_labels_set(access=self.access, instance=instance, labels=payload.validated_data["labels"])
        return Response(InstanceSerializer(instance).data)

    def destroy(self, request, org_slug, pk):
        instance_delete(access=self.access, instance=self._instance(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
