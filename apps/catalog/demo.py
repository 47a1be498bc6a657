"""A realistic demo catalog for development, screenshots and tests.

Prices are close to public GPU-cloud list prices of 2025. Loading is idempotent: every row is
found by its natural key and updated, so running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from .models import (
    Flavor,
    GpuModel,
    Image,
    Offering,
    OfferingKind,
    Price,
    PriceUnit,
    Region,
    SliceKind,
)

# A fixed start keeps re-runs idempotent: the price rows' natural key includes valid_from.
DEMO_PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)

REGIONS = [
    ("us-east-1", "US East (Ashburn, VA)", "US"),
    ("eu-west-1", "EU West (Amsterdam)", "NL"),
    ("eu-north-1", "EU North (Stockholm)", "SE"),
]

H100, H200, A100, L40S = "h100-80gb-sxm", "h200-141gb-sxm", "a100-80gb-sxm", "l40s-48gb"

GPU_MODELS = [
    (H100, "NVIDIA H100 80GB SXM", 80, "NVIDIA H100 80GB HBM3"),
    (H200, "NVIDIA H200 141GB SXM", 141, "NVIDIA H200"),
    (A100, "NVIDIA A100 80GB SXM", 80, "NVIDIA A100-SXM4-80GB"),
    (L40S, "NVIDIA L40S 48GB", 48, "NVIDIA L40S"),
]

# USD per whole GPU-hour; a whole-GPU flavor costs rate × count.
GPU_HOUR = {
    H100: Decimal("2.49"), H200: Decimal("3.29"), A100: Decimal("1.49"), L40S: Decimal("0.99"),
}
# Regions that differ from the list price: Amsterdam's power costs more, Stockholm's less.
REGIONAL_GPU_HOUR = {
    ("eu-west-1", H100): Decimal("2.69"),
    ("eu-west-1", H200): Decimal("3.49"),
    ("eu-north-1", L40S): Decimal("0.89"),
}


@dataclass(frozen=True)
class DemoFlavor:
    slug: str
    name: str
    gpu: str | None = None
    count: int = 0
    slice_kind: str = SliceKind.WHOLE
    mig_profile: str = ""
    fraction: Decimal | None = None
    vcpus: int = 0
    ram_gib: int = 0
    disk_gib: int = 0
    hourly: Decimal | None = None  # only where not rate × count (slices)
    served_model: str = ""
    tokens: tuple[Decimal, Decimal] | None = None  # USD per 1M input, output tokens


def _whole(
    slug: str, gpu: str, count: int, vcpus: int, ram: int, disk: int, name: str
) -> DemoFlavor:
    return DemoFlavor(
        slug=slug, name=name, gpu=gpu, count=count, vcpus=vcpus, ram_gib=ram, disk_gib=disk
    )


def _mig(
    slug: str, profile: str, vcpus: int, ram: int, disk: int, hourly: str, gpu: str = H100
) -> DemoFlavor:
    label = {H100: "H100", A100: "A100"}[gpu]
    return DemoFlavor(
        slug=slug, name=f"{label} MIG {profile}", gpu=gpu, count=1, slice_kind=SliceKind.MIG,
        mig_profile=profile, vcpus=vcpus, ram_gib=ram, disk_gib=disk, hourly=Decimal(hourly),
    )


def _endpoint(slug: str, name: str, model: str, per_m_in: str, per_m_out: str) -> DemoFlavor:
    return DemoFlavor(
        slug=slug, name=name, slice_kind=SliceKind.NONE, served_model=model,
        tokens=(Decimal(per_m_in), Decimal(per_m_out)),
    )


OFFERINGS = [
    (
        "bare-metal", OfferingKind.BARE_METAL, "Bare-metal GPU nodes",
        "Whole HGX servers with 8 SXM GPUs on NVLink/NVSwitch, 3.2 Tbit/s InfiniBand and local "
        "NVMe, all GPUs yours, reached over SSH with your keys. Every node passes a health check "
        "right before it is handed to you. Nothing persists: when you stop or delete it, your "
        "account and home folder are wiped, so keep your data elsewhere.",
        [
            _whole("8x-h100", H100, 8, 224, 2048, 30720, "8× H100 80GB SXM node"),
            _whole("8x-h200", H200, 8, 224, 3072, 30720, "8× H200 141GB SXM node"),
        ],
    ),
    (
        "gpu-instances", OfferingKind.GPU_SLICE, "GPU instances",
        "Containers with dedicated GPUs, a MIG slice or a time-shared fraction of a GPU. "
        "Billed per second while running.",
        [
            _whole("1x-h100", H100, 1, 24, 240, 1000, "1× H100 80GB"),
            _whole("2x-h100", H100, 2, 48, 480, 2000, "2× H100 80GB"),
            _whole("4x-h100", H100, 4, 96, 960, 4000, "4× H100 80GB"),
            _whole("8x-h100", H100, 8, 192, 1920, 8000, "8× H100 80GB"),
            _whole("1x-a100", A100, 1, 30, 200, 1000, "1× A100 80GB"),
            _mig("h100-mig-1g-10gb", "1g.10gb", 4, 30, 100, "0.39"),
            _mig("h100-mig-3g-40gb", "3g.40gb", 12, 110, 400, "1.19"),
            # The profiles `make run`'s A100 host is split into (devtools/fleet.py), so it sells.
            _mig("a100-mig-1g-10gb", "1g.10gb", 4, 30, 100, "0.25", gpu=A100),
            _mig("a100-mig-3g-40gb", "3g.40gb", 12, 110, 400, "0.69", gpu=A100),
            DemoFlavor(
                slug="half-l40s", name="½ L40S 48GB", gpu=L40S, count=1,
                slice_kind=SliceKind.FRACTION, fraction=Decimal("0.50"),
                vcpus=8, ram_gib=48, disk_gib=200, hourly=Decimal("0.55"),
            ),
        ],
    ),
    (
        "notebooks", OfferingKind.NOTEBOOK, "Jupyter notebooks",
        "A JupyterLab server with PyTorch and CUDA ready, in your browser in seconds. Stop it "
        "and pay nothing; your home folder stays.",
        [
            _whole("notebook-1x-h100", H100, 1, 16, 128, 200, "Notebook · 1× H100 80GB"),
            _mig("notebook-mig-1g-10gb", "1g.10gb", 4, 30, 50, "0.39"),
            _whole("notebook-1x-l40s", L40S, 1, 8, 64, 100, "Notebook · 1× L40S 48GB"),
        ],
    ),
    (
        "ray-clusters", OfferingKind.RAY, "Ray clusters",
        "A managed Ray cluster (head plus GPU workers) with the Ray dashboard, for distributed "
        "training, tuning and batch inference.",
        [
            _whole("ray-2x-l40s", L40S, 2, 32, 256, 500, "Ray · 2 workers × 1 L40S"),
            _whole("ray-8x-h100", H100, 8, 192, 1920, 8000, "Ray · 2 workers × 4 H100"),
            _whole("ray-16x-h100", H100, 16, 448, 4096, 61440, "Ray · 2 nodes × 8 H100"),
        ],
    ),
    (
        "kubeflow", OfferingKind.KUBEFLOW, "Kubeflow workspaces",
        "A Kubeflow profile on a managed Kubernetes cluster: notebooks, pipelines and training "
        "operators with a GPU quota.",
        [
            _whole("kubeflow-4x-a100", A100, 4, 120, 800, 4000, "Kubeflow · 4× A100 80GB"),
            _whole("kubeflow-8x-h100", H100, 8, 192, 1920, 8000, "Kubeflow · 8× H100 80GB"),
        ],
    ),
    (
        "model-endpoints", OfferingKind.TOKEN_ENDPOINT, "Model endpoints",
        "OpenAI-compatible chat and completion endpoints for open models. Pay per token, no "
        "GPU to manage.",
        [
            _endpoint("llama-3-1-8b-instruct", "Llama 3.1 8B Instruct",
                      "meta-llama/Llama-3.1-8B-Instruct", "0.18", "0.18"),
            _endpoint("llama-3-3-70b-instruct", "Llama 3.3 70B Instruct",
                      "meta-llama/Llama-3.3-70B-Instruct", "0.88", "0.88"),
            _endpoint("qwen-2-5-72b-instruct", "Qwen2.5 72B Instruct",
                      "Qwen/Qwen2.5-72B-Instruct", "0.60", "1.20"),
        ],
    ),
]

IMAGES = [
    # What notebooks run today: the node agent starts JupyterLab from its own Python environment
    # (no container runtime yet), so the image says exactly that.
    ("jupyterlab-4-host", "JupyterLab 4 (node's Python environment)",
     "JupyterLab 4 and an IPython kernel from the node agent's environment, with the host's CUDA driver.",
     [OfferingKind.NOTEBOOK]),
    ("pytorch-2-6-cuda-12-6-jupyterlab-4", "PyTorch 2.6 + CUDA 12.6 + JupyterLab 4",
     "Python 3.12, PyTorch 2.6, CUDA 12.6, cuDNN 9, JupyterLab 4.",
     [OfferingKind.GPU_SLICE]),
    ("ubuntu-22-04-cuda-12-6", "Ubuntu 22.04 LTS + CUDA 12.6",
     "NVIDIA driver 560, CUDA 12.6, Docker and the NVIDIA Container Toolkit.",
     [OfferingKind.BARE_METAL, OfferingKind.GPU_SLICE]),
    ("ray-2-pytorch-2-6", "Ray 2.x + PyTorch 2.6",
     "Ray 2 with Train, Tune, Data and Serve; PyTorch 2.6 on CUDA 12.6.", [OfferingKind.RAY]),
    ("kubeflow-notebooks", "Kubeflow Notebooks",
     "Kubeflow's JupyterLab notebook images with PyTorch and CUDA 12.", [OfferingKind.KUBEFLOW]),
]


def _price_set(*, flavor: Flavor, unit: str, amount: Decimal, region: Region | None = None) -> None:
    Price.objects.update_or_create(
        flavor=flavor, region=region, unit=unit, currency="USD", valid_from=DEMO_PRICES_FROM,
        defaults={"amount": amount},
    )


def _flavor_prices_set(*, flavor: Flavor, spec: DemoFlavor, regions: dict[str, Region]) -> None:
    if spec.tokens:
        _price_set(flavor=flavor, unit=PriceUnit.MILLION_INPUT_TOKENS, amount=spec.tokens[0])
        _price_set(flavor=flavor, unit=PriceUnit.MILLION_OUTPUT_TOKENS, amount=spec.tokens[1])
        return
    if spec.hourly is not None:  # slices have their own price and no regional difference
        _price_set(flavor=flavor, unit=PriceUnit.HOUR, amount=spec.hourly)
        return
    _price_set(flavor=flavor, unit=PriceUnit.HOUR, amount=GPU_HOUR[spec.gpu] * spec.count)
    for (region_code, gpu), rate in REGIONAL_GPU_HOUR.items():
        if gpu == spec.gpu:
            _price_set(flavor=flavor, unit=PriceUnit.HOUR, amount=rate * spec.count,
                       region=regions[region_code])


@transaction.atomic
def catalog_demo_load() -> None:
    """Create or update the demo regions, GPU models, offerings, flavors, images and prices."""
    regions = {
        code: Region.objects.update_or_create(
            code=code, defaults={"name": name, "country": country, "is_active": True}
        )[0]
        for code, name, country in REGIONS
    }
    gpus = {
        slug: GpuModel.objects.update_or_create(
            slug=slug, defaults={"name": name, "memory_gib": memory, "nvml_name": nvml}
        )[0]
        for slug, name, memory, nvml in GPU_MODELS
    }
    for order, (slug, kind, name, description, flavors) in enumerate(OFFERINGS):
        offering, _ = Offering.objects.update_or_create(
            slug=slug,
            defaults={"kind": kind, "name": name, "description": description,
                      "is_public": True, "sort_order": order * 10},
        )
        for flavor_order, spec in enumerate(flavors):
            flavor, _ = Flavor.objects.update_or_create(
                offering=offering, slug=spec.slug,
                defaults={
                    "name": spec.name, "gpu_model": gpus[spec.gpu] if spec.gpu else None,
                    "gpu_count": spec.count, "slice_kind": spec.slice_kind,
                    "mig_profile": spec.mig_profile, "gpu_fraction": spec.fraction,
                    "vcpus": spec.vcpus, "ram_gib": spec.ram_gib, "disk_gib": spec.disk_gib,
                    "served_model": spec.served_model, "sort_order": flavor_order * 10,
                },
            )
            _flavor_prices_set(flavor=flavor, spec=spec, regions=regions)
    for slug, name, description, kinds in IMAGES:
        Image.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name, "description": description,
                "offering_kinds": [k.value for k in kinds],
            },
        )
