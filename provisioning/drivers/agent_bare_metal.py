"""Bare-metal nodes reached over SSH, run by the node agent on its host (offering kind bare_metal).

The recipe of one kind, as agent_ssh.py's, with three differences the rest of the portal acts on:
- placement takes a whole node (`PlacementNeeds.whole_node`): every GPU of one node of the
  flavor's model and size, each free and healthy, on a READY node that is not waiting for a wipe
  and did not fail its last health check;
- the agent runs its node health check right before the hand-over (provisioning/agent/workloads/
  bare_metal.py) and reports a failed one instead of starting: the node is cordoned and the
  customer told, never given it;
- nothing persists: when the workload stops, its account and home are wiped and the report says
  so; until then the node is not placed again (Node.wipe_pending_instance)."""

from __future__ import annotations

from provisioning.protocol import DESIRED_RUNNING, KIND_BARE_METAL, BareMetalSpec

from .base import Driver, PlacementNeeds, WorkloadFacts


class AgentBareMetalDriver(Driver):
    name = "agent-bare-metal"
    offering_kinds = frozenset({KIND_BARE_METAL})
    # Logged in to with the keys chosen at launch: the form's key picker, the API's `ssh_keys`.
    needs_ssh_keys = True

    def placement_needs(self) -> PlacementNeeds:
        return PlacementNeeds(gpus_on_one_node=True, whole_node=True)

    def workload_spec(self, facts: WorkloadFacts) -> BareMetalSpec:
        running = facts.desired == DESIRED_RUNNING
        return BareMetalSpec(
            id=facts.id,
            kind=KIND_BARE_METAL,
            state=facts.desired,
            # Every GPU of the node while it should run (the allocation holds them all).
            gpus=facts.gpus if running else (),
            authorized_keys=facts.authorized_keys,
        )


# One instance per process: the registry refuses a second, different object under the same name.
AGENT_BARE_METAL_DRIVER = AgentBareMetalDriver()
