from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("", views.storefront, name="storefront"),
    path("catalog/<slug:slug>/", views.offering_detail, name="offering-detail"),
]
