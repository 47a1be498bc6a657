"""The Celery application. Workers and beat are separate processes (see devtools/launcher.py for development)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(
    lambda: [
        "apps.accounts", "apps.catalog", "apps.capacity", "apps.instances", "apps.billing", "apps.chargeback",
        "provisioning",
    ]
)
