"""/api/v1/organizations/{slug}/reservations/: a customer's reservations (the agents' API is urls.py)."""

from rest_framework.routers import SimpleRouter

from .reservations import ReservationViewSet

# Path converters (see portal/api.py): an id that is not a UUID is a 404 before any view.
router = SimpleRouter(use_regex_path=False)
router.register("reservations", ReservationViewSet, basename="reservation")

urlpatterns = router.urls
