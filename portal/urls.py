from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.instances.views.proxy_auth import notebook_auth
from portal.health import healthz
from portal.views import favicon

api_v1 = [
    path("", include("apps.accounts.api.urls")),
    path("catalog/", include("apps.catalog.api.urls")),
    path("agent/", include("apps.capacity.api.urls")),
    # The agent sees one API under /api/v1/agent/; its workloads belong to apps.instances, which
    # capacity (below instances) may not import.
    path("agent/", include("apps.instances.api.agent")),
    path("organizations/<slug:org_slug>/", include("apps.instances.api.urls")),
    path("organizations/<slug:org_slug>/", include("apps.billing.api.urls")),
    path("organizations/<slug:org_slug>/", include("apps.capacity.api.urls_reservations")),
    path("organizations/<slug:org_slug>/", include("apps.chargeback.api.urls_focus")),
    path("organizations/<slug:org_slug>/", include("apps.chargeback.api.urls")),
]

# The API comes first: agents' heartbeats are the most frequent requests, and URL resolution
# walks this list in order.
urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("", include("apps.catalog.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.instances.urls")),
    path("", include("apps.billing.urls")),
    path("", include("apps.capacity.urls_reservations")),
    path("", include("apps.chargeback.urls")),
    path("", include("apps.chargeback.urls_focus")),
    path("accounts/", include("allauth.urls")),
    path("ops/", include("apps.capacity.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("internal/notebook-auth", notebook_auth, name="notebook-auth"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]

handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
