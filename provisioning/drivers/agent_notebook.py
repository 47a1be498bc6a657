"""Notebooks run by the node agent on its host: JupyterLab processes pinned to the allocated GPUs.

The driver's part is the control plane's: hold the capacity and publish the desired state. The
agent long-polls that state, starts or stops the server and reports back (apps.instances)."""

from __future__ import annotations

from .base import Driver


class AgentNotebookDriver(Driver):
    name = "agent-notebook"
    offering_kinds = frozenset({"notebook"})

    def start(self, instance_id) -> None:
        from apps.instances.services.placement import instance_schedule

        instance_schedule(instance_id=instance_id)

    def stop(self, instance_id) -> None:
        from apps.instances.models import Instance, InstanceState
        from apps.instances.services.placement import instance_capacity_release

        instance = Instance.objects.filter(pk=instance_id).first()
        if instance is not None and instance.state in (InstanceState.TERMINATED, InstanceState.FAILED):
            instance_capacity_release(instance=instance)


# One instance per process: the registry refuses a second, different object under the same name.
AGENT_NOTEBOOK_DRIVER = AgentNotebookDriver()
