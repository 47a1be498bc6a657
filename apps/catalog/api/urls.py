from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

# Path converters (see portal/api.py): a lookup that is not a slug is a 404 before any view.
router = SimpleRouter(use_regex_path=False)
router.register("regions", views.RegionViewSet, basename="catalog-region")
router.register("gpu-models", views.GpuModelViewSet, basename="catalog-gpu-model")
router.register("offerings", views.OfferingViewSet, basename="catalog-offering")
router.register("images", views.ImageViewSet, basename="catalog-image")

flavor_list = views.FlavorViewSet.as_view({"get": "list"})
flavor_detail = views.FlavorViewSet.as_view({"get": "retrieve"})

urlpatterns = [
    path("flavors/", flavor_list, name="catalog-flavor-list"),
    path("flavors/<slug:offering_slug>/<slug:slug>/", flavor_detail, name="catalog-flavor-detail"),
    *router.urls,
]
