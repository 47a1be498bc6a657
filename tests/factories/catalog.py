from datetime import UTC, datetime
from decimal import Decimal

import factory

from apps.catalog.models import (
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

LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Region

    code = factory.Sequence(lambda n: f"test-region-{n}")
    name = factory.Sequence(lambda n: f"Test region {n}")
    country = "US"
    is_active = True


class GpuModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GpuModel

    slug = factory.Sequence(lambda n: f"gpu-{n}")
    name = factory.Sequence(lambda n: f"NVIDIA Test GPU {n}")
    memory_gib = 80
    nvml_name = factory.Sequence(lambda n: f"NVIDIA Test GPU {n} HBM3")


class OfferingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offering

    slug = factory.Sequence(lambda n: f"offering-{n}")
    name = factory.Sequence(lambda n: f"Offering {n}")
    kind = OfferingKind.GPU_SLICE
    description = "A test offering."
    is_public = True


class FlavorFactory(factory.django.DjangoModelFactory):
    """A whole-GPU flavor; the traits give the other slice kinds."""

    class Meta:
        model = Flavor

    offering = factory.SubFactory(OfferingFactory)
    slug = factory.Sequence(lambda n: f"flavor-{n}")
    name = factory.Sequence(lambda n: f"Flavor {n}")
    gpu_model = factory.SubFactory(GpuModelFactory)
    gpu_count = 1
    slice_kind = SliceKind.WHOLE
    vcpus = 16
    ram_gib = 128
    disk_gib = 500

    class Params:
        mig = factory.Trait(slice_kind=SliceKind.MIG, mig_profile="1g.10gb", gpu_count=1)
        fraction = factory.Trait(
            slice_kind=SliceKind.FRACTION, gpu_fraction=Decimal("0.50"), gpu_count=1
        )
        token_endpoint = factory.Trait(
            offering=factory.SubFactory(OfferingFactory, kind=OfferingKind.TOKEN_ENDPOINT),
            slice_kind=SliceKind.NONE, gpu_model=None, gpu_count=0, vcpus=0, ram_gib=0,
            disk_gib=0, served_model="meta-llama/Llama-3.1-8B-Instruct",
        )


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    flavor = factory.SubFactory(FlavorFactory)
    region = None
    unit = PriceUnit.HOUR
    currency = "USD"
    amount = Decimal("2.49")
    valid_from = LONG_AGO


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    slug = factory.Sequence(lambda n: f"image-{n}")
    name = factory.Sequence(lambda n: f"Image {n}")
    offering_kinds = factory.LazyFunction(lambda: [OfferingKind.NOTEBOOK.value])
