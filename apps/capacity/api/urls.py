from django.urls import path

from apps.instances.api import agent as agent_workloads

from . import views

urlpatterns = [
    path("register", views.RegisterView.as_view(), name="agent-register"),
    path("heartbeat", views.HeartbeatView.as_view(), name="agent-heartbeat"),
    path("telemetry", views.TelemetryView.as_view(), name="agent-telemetry"),
    # Workloads belong to the instances app; the agent sees one API under /api/v1/agent/.
    path("workloads", agent_workloads.workloads_long_poll, name="agent-workloads"),
    path(
        "workloads/<uuid:instance_id>/status",
        agent_workloads.WorkloadStatusView.as_view(),
        name="agent-workload-status",
    ),
]
