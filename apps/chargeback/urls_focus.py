"""The FOCUS CSV download beside the chargeback pages (included from portal/urls.py)."""

from django.urls import path

from . import views_focus

urlpatterns = [
    path("orgs/<slug:slug>/chargeback/focus.csv", views_focus.focus_csv_download, name="chargeback-focus-csv"),
]
