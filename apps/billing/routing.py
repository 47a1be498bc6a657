from django.urls import path

from .consumers import BillingOverviewConsumer
from .consumers_invoices import InvoiceDetailConsumer, InvoiceListConsumer

websocket_urlpatterns = [
    path("ws/orgs/<slug:slug>/billing/", BillingOverviewConsumer.as_asgi()),
    path("ws/orgs/<slug:slug>/billing/invoices/", InvoiceListConsumer.as_asgi()),
    path("ws/orgs/<slug:slug>/billing/invoices/<int:invoice_id>/", InvoiceDetailConsumer.as_asgi()),
]
