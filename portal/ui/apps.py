from django.apps import AppConfig


class UiConfig(AppConfig):
    # An app only so that its template tags and templates are found; it has no models.
    name = "portal.ui"
    label = "ui"
    verbose_name = "UI toolkit"
