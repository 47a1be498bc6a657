"""Public, read-only REST API of the catalog. Anyone may read it; nothing here is tenant data."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import AllowAny

from portal.api import PortalApiMixin

from ..selectors import (
    flavors_list,
    gpu_models_list,
    images_list,
    offerings_public_list,
    regions_active_list,
)
from .filters import FlavorFilter, ImageFilter, OfferingFilter
from .serializers import (
    FlavorWithOfferingSerializer,
    GpuModelSerializer,
    ImageSerializer,
    OfferingSerializer,
    RegionSerializer,
)

_REGION = OpenApiParameter(
    "region", OpenApiTypes.STR, OpenApiParameter.QUERY,
    description="Region code whose prices to show (default: list prices of all regions)",
)


class PublicReadOnlyViewSet(PortalApiMixin, viewsets.ReadOnlyModelViewSet):
    permission_classes = [AllowAny]
    lookup_field = "slug"
    lookup_value_converter = "slug"  # region codes are slugs too


@extend_schema_view(
    list=extend_schema(summary="Active regions"), retrieve=extend_schema(summary="A region")
)
class RegionViewSet(PublicReadOnlyViewSet):
    serializer_class = RegionSerializer
    lookup_field = "code"
    filterset_class = None

    def get_queryset(self):
        return regions_active_list()


@extend_schema_view(
    list=extend_schema(summary="GPU models"), retrieve=extend_schema(summary="A GPU model")
)
class GpuModelViewSet(PublicReadOnlyViewSet):
    serializer_class = GpuModelSerializer
    filterset_class = None

    def get_queryset(self):
        return gpu_models_list()


@extend_schema_view(
    list=extend_schema(summary="Public offerings with flavors and current prices"),
    retrieve=extend_schema(
        summary="An offering with flavors and current prices", parameters=[_REGION]
    ),
)
class OfferingViewSet(PublicReadOnlyViewSet):
    serializer_class = OfferingSerializer
    filterset_class = OfferingFilter

    def get_queryset(self):
        return offerings_public_list()


_FLAVOR_PATH = [
    OpenApiParameter(
        "offering_slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="Offering slug"
    ),
    OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="Flavor slug"),
]


@extend_schema_view(
    list=extend_schema(summary="Flavors of public offerings, filterable, with current prices"),
    retrieve=extend_schema(
        summary="A flavor (slugs are unique per offering)", parameters=[*_FLAVOR_PATH, _REGION]
    ),
)
class FlavorViewSet(PublicReadOnlyViewSet):
    serializer_class = FlavorWithOfferingSerializer
    filterset_class = FlavorFilter

    def get_queryset(self):
        return flavors_list()

    def get_object(self):
        # A flavor slug is unique only inside its offering, so the path names both.
        queryset = self.filter_queryset(self.get_queryset())
        flavor = get_object_or_404(
            queryset, offering__slug=self.kwargs["offering_slug"], slug=self.kwargs["slug"]
        )
        self.check_object_permissions(self.request, flavor)
        return flavor


@extend_schema_view(
    list=extend_schema(summary="Images"), retrieve=extend_schema(summary="An image")
)
class ImageViewSet(PublicReadOnlyViewSet):
    serializer_class = ImageSerializer
    filterset_class = ImageFilter

    def get_queryset(self):
        return images_list()
