import factory

from apps.capacity.models import Gpu, GpuHealth, MigDevice, Node, NodeState
from tests.factories.catalog import GpuModelFactory, RegionFactory


class NodeFactory(factory.django.DjangoModelFactory):
    """A simulated node, READY, in a region."""

    class Meta:
        model = Node

    region = factory.SubFactory(RegionFactory)
    hostname = factory.Sequence(lambda n: f"sim-node-{n:05d}")
    simulated = True
    state = NodeState.READY
    credential_hash = "0" * 64
    cpus = 128
    ram_bytes = 2 * 2**40


class GpuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gpu

    node = factory.SubFactory(NodeFactory)
    uuid = factory.Sequence(lambda n: f"GPU-SIM-{n:08d}")
    index = 0
    gpu_model = factory.SubFactory(GpuModelFactory)
    name = factory.LazyAttribute(lambda gpu: gpu.gpu_model.nvml_name if gpu.gpu_model else "Unknown GPU")
    memory_bytes = 80 * 2**30
    health = GpuHealth.OK


class MigDeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MigDevice

    gpu = factory.SubFactory(GpuFactory, mig_enabled=True)
    uuid = factory.Sequence(lambda n: f"MIG-SIM-{n:08d}")
    profile = "1g.10gb"
    memory_bytes = 10 * 2**30
    present = True


def node_with_gpus(region, gpu_model, n: int = 8, mig_profiles: list[str] | None = None, **node_fields) -> Node:
    """A READY simulated node with `n` healthy GPUs of `gpu_model`.

    With `mig_profiles`, every GPU has MIG enabled and one present device per listed profile.
    """
    node = NodeFactory(region=region, **node_fields)
    for index in range(n):
        gpu = GpuFactory(node=node, index=index, gpu_model=gpu_model, mig_enabled=bool(mig_profiles))
        for profile in mig_profiles or []:
            MigDeviceFactory(gpu=gpu, profile=profile)
    return node
