from django.urls import path

from .views import onboarding

urlpatterns = [
    path("onboarding/dismiss/", onboarding.onboarding_dismiss_view, name="onboarding-dismiss"),
]
