from django.apps import AppConfig


class ChargebackConfig(AppConfig):
    name = "apps.chargeback"
    label = "chargeback"
    verbose_name = "Chargeback: usage roll-ups by project, user, label; FOCUS exports"
