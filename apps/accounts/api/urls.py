from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

# Path converters type the ids (see portal/api.py): a non-integer id is a 404 before any view.
router = SimpleRouter(use_regex_path=False)
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("ssh-keys", views.SshKeyViewSet, basename="ssh-key")

org_router = SimpleRouter(use_regex_path=False)
org_router.register("members", views.MemberViewSet, basename="member")
org_router.register("invitations", views.InvitationViewSet, basename="invitation")
org_router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
org_router.register("projects", views.ProjectViewSet, basename="project")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("invitations/accept/", views.InvitationAcceptView.as_view(), name="api-invitation-accept"),
    path("organizations/<slug:org_slug>/", include(org_router.urls)),
    *router.urls,
]
