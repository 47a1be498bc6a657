from rest_framework.routers import SimpleRouter

from .views import InstanceViewSet

# Path converters (see portal/api.py): an id that is not a UUID is a 404 before any view.
router = SimpleRouter(use_regex_path=False)
router.register("instances", InstanceViewSet, basename="instance")

urlpatterns = router.urls
