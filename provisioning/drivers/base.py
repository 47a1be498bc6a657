"""The one small interface every driver implements: drivers are executors' recipes.

A driver says, for the offering kinds it serves, what a workload needs placed
(`placement_needs`) and what its node's agent is to run (`workload_spec`, a spec of the shared
protocol). It gets plain data and returns plain data: the Celery task (provisioning/tasks.py)
loads the instance once, asks the driver, and applies the transitions itself through the
apps.instances services. So a driver never imports `apps.*` (a test checks), nor Django.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import ClassVar

from provisioning.protocol import WorkloadSpec

# The catalog's OfferingKind values. Repeated here because this package must not import Django;
# tests/catalog keeps the two in lock-step, so a typo in a driver's kinds fails loudly.
KNOWN_OFFERING_KINDS: frozenset[str] = frozenset(
    {"bare_metal", "gpu_slice", "notebook", "ray", "kubeflow", "token_endpoint"}
)


@dataclass(frozen=True)
class PlacementNeeds:
    """What must be held before the workload can run. `gpus_on_one_node`: the flavor's GPUs
    (whole, fractions or MIG devices) on one node of the instance's region, whose agent then
    runs the workload; the only placement the allocator makes today, so the placement service
    refuses a driver that asks for anything else rather than pretend. `whole_node`: the flavor's
    GPUs are a whole node: every GPU of one node of the flavor's model and size, each free and
    healthy, the node READY, wiped of its last tenant and not failing its last health check
    (bare metal; placed as a one-node gang, allocation_gang_create(whole_nodes=1))."""

    gpus_on_one_node: bool = True
    whole_node: bool = False


@dataclass(frozen=True)
class WorkloadFacts:
    """What the portal knows of one instance's workload, as plain data for `workload_spec`."""

    id: str
    kind: str
    desired: str  # provisioning.protocol.DESIRED_*
    gpus: tuple[str, ...]  # NVML UUIDs of the held GPUs or MIG devices; empty unless running
    image_args: tuple[str, ...]  # the image's extra options for the workload's program
    # The public key lines chosen at launch (an SSH workload's; empty for other kinds).
    authorized_keys: tuple[str, ...] = ()


class Driver(ABC):
    """Serves `offering_kinds`. Not abstract in its two questions so that a registry-only
    driver (the catalog's tests register kinds that are never launched) needs neither."""

    name: ClassVar[str]
    offering_kinds: ClassVar[frozenset[str]]
    # Whether the portal's launch form can launch these kinds yet; False: the API only (the
    # storefront then points to it instead of the form).
    form_launchable: ClassVar[bool] = True
    # Whether a launch of these kinds takes the launching user's SSH keys (reached over SSH):
    # the launch form shows its key picker and the launch refuses none, from this one flag.
    needs_ssh_keys: ClassVar[bool] = False

    def placement_needs(self) -> PlacementNeeds:
        """What an instance of this driver's kinds needs placed before it runs."""
        raise NotImplementedError(f"driver {self.name!r} cannot place workloads")

    def workload_spec(self, facts: WorkloadFacts) -> WorkloadSpec:
        """The spec the node's agent gets for this workload (provisioning.protocol)."""
        raise NotImplementedError(f"driver {self.name!r} has no workload spec")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kinds={sorted(self.offering_kinds)}>"
