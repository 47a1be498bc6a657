"""The FOCUS export's API route, under /api/v1/organizations/<org_slug>/ (see portal/urls.py)."""

from django.urls import path

from .focus import FocusExportView

urlpatterns = [
    path("chargeback/focus/", FocusExportView.as_view(), name="api-chargeback-focus"),
]
