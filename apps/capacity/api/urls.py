from django.urls import path

from . import views

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="agent-register"),
    path("heartbeat", views.HeartbeatView.as_view(), name="agent-heartbeat"),
    path("telemetry", views.TelemetryView.as_view(), name="agent-telemetry"),
    # The workloads long-poll and status reports (also under /api/v1/agent/) belong to
    # apps.instances (apps/instances/api/agent.py): capacity does not import instances.
]
