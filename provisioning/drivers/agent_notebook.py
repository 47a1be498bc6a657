"""Notebooks run by the node agent on its host: JupyterLab servers pinned to the allocated GPUs.

The recipe of one kind: it needs GPUs on one node (`placement_needs`), its agent gets a
`NotebookSpec` (`workload_spec`), the agent's notebook runner (provisioning/agent/workloads/
supervisor.py) runs it, and apps/instances/templates shows it. The Celery task places it and
the agent's reports move it along; this module only answers questions, with plain data."""

from __future__ import annotations

from provisioning.protocol import DESIRED_RUNNING, KIND_NOTEBOOK, NotebookSpec

from .base import Driver, PlacementNeeds, WorkloadFacts


class AgentNotebookDriver(Driver):
    name = "agent-notebook"
    offering_kinds = frozenset({KIND_NOTEBOOK})

    def placement_needs(self) -> PlacementNeeds:
        return PlacementNeeds(gpus_on_one_node=True)

    def workload_spec(self, facts: WorkloadFacts) -> NotebookSpec:
        running = facts.desired == DESIRED_RUNNING
        return NotebookSpec(
            id=facts.id,
            kind=KIND_NOTEBOOK,
            state=facts.desired,
            # GPUs only to a workload that should run: a stopped one holds none.
            gpus=facts.gpus if running else (),
            jupyter_args=facts.image_args,
        )


# One instance per process: the registry refuses a second, different object under the same name.
AGENT_NOTEBOOK_DRIVER = AgentNotebookDriver()
