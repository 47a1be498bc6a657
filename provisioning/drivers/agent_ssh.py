"""GPU instances reached over SSH, run by the node agent on its host (offering kind gpu_slice).

The recipe of one kind, as agent_notebook.py's: GPUs on one node (`placement_needs`), a
`GpuSliceSpec` for the agent (`workload_spec`) carrying exactly the public keys chosen at launch
(Instance.ssh_authorized_keys, a copy, so a key deleted later does not change who may log in to
a running instance), run by the agent's provisioning/agent/workloads/ssh_supervisor.py."""

from __future__ import annotations

from provisioning.protocol import DESIRED_RUNNING, KIND_GPU_SLICE, GpuSliceSpec

from .base import Driver, PlacementNeeds, WorkloadFacts


class AgentSshDriver(Driver):
    name = "agent-ssh"
    offering_kinds = frozenset({KIND_GPU_SLICE})
    # Logged in to with the keys chosen at launch: the form's key picker, the API's `ssh_keys`.
    needs_ssh_keys = True

    def placement_needs(self) -> PlacementNeeds:
        return PlacementNeeds(gpus_on_one_node=True)

    def workload_spec(self, facts: WorkloadFacts) -> GpuSliceSpec:
        running = facts.desired == DESIRED_RUNNING
        return GpuSliceSpec(
            id=facts.id,
            kind=KIND_GPU_SLICE,
            state=facts.desired,
            # GPUs only to a workload that should run: a stopped one holds none.
            gpus=facts.gpus if running else (),
            authorized_keys=facts.authorized_keys,
        )


# One instance per process: the registry refuses a second, different object under the same name.
AGENT_SSH_DRIVER = AgentSshDriver()
