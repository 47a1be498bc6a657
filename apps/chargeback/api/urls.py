"""Chargeback's API, under /api/v1/organizations/<org_slug>/ (see portal/urls.py)."""

from django.urls import path

from .views import ChargebackDailyView, ChargebackIdleView, ChargebackReportView

urlpatterns = [
    path("chargeback/", ChargebackReportView.as_view(), name="api-chargeback"),
    path("chargeback/daily/", ChargebackDailyView.as_view(), name="api-chargeback-daily"),
    path("chargeback/idle/", ChargebackIdleView.as_view(), name="api-chargeback-idle"),
]
