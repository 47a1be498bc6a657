"""What is sold: regions, GPU models, offerings, their flavors, images and prices.

The catalog describes products, not hardware: apps.capacity owns the real nodes and GPUs and
matches them to GpuModel through `nvml_name`.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.ui.money import money_format

MIG_PROFILE_REGEX = r"^[1-7]g\.[0-9]+gb(\+me)?$"


class Region(models.Model):
    code = models.SlugField(max_length=32, unique=True, help_text="e.g. us-east-1")
    name = models.CharField(max_length=80)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, upper case")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(country__regex=r"^[A-Z]{2}$"), name="region_country_iso2"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class GpuModel(models.Model):
    slug = models.SlugField(max_length=64, unique=True, help_text="e.g. h100-80gb-sxm")
    name = models.CharField(max_length=80, help_text="e.g. NVIDIA H100 80GB SXM")
    memory_gib = models.PositiveIntegerField()
    # Unique so that a GPU reported by a node agent maps to exactly one model.
    nvml_name = models.CharField(
        max_length=96, unique=True,
        help_text="The name NVML reports (nvmlDeviceGetName), e.g. NVIDIA H100 80GB HBM3",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU model"

    def __str__(self) -> str:
        return self.name


class OfferingKind(models.TextChoices):
    BARE_METAL = "bare_metal", "Bare-metal nodes"
    GPU_SLICE = "gpu_slice", "GPU instances"
    NOTEBOOK = "notebook", "Notebooks"
    RAY = "ray", "Ray clusters"
    KUBEFLOW = "kubeflow", "Kubeflow"
    TOKEN_ENDPOINT = "token_endpoint", "Model endpoints (pay per token)"


class Offering(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=32, choices=OfferingKind.choices)
    description = models.TextField(blank=True)
    is_public = models.BooleanField(
        default=True, help_text="Shown in the public storefront and API."
    )
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=OfferingKind.values), name="offering_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class SliceKind(models.TextChoices):
    WHOLE = "whole", "Whole GPUs"
    MIG = "mig", "MIG slice"
    FRACTION = "fraction", "Time-shared fraction"
    NONE = "none", "No GPU"


class Flavor(models.Model):
    """One size of an offering. GPU fields follow `slice_kind`; the database enforces it.

    A MIG or fraction flavor is one slice of one GPU, so its gpu_count is 1.
    """

    offering = models.ForeignKey(Offering, on_delete=models.CASCADE, related_name="flavors")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=120)
    gpu_model = models.ForeignKey(
        GpuModel, null=True, blank=True, on_delete=models.PROTECT, related_name="flavors"
    )
    gpu_count = models.PositiveSmallIntegerField(default=0)
    slice_kind = models.CharField(max_length=16, choices=SliceKind.choices, default=SliceKind.WHOLE)
    mig_profile = models.CharField(
        max_length=16, blank=True, help_text="e.g. 1g.10gb; only for MIG"
    )
    gpu_fraction = models.DecimalField(
        max_digits=3, decimal_places=2, null=True, blank=True,
        help_text="Share of one GPU, e.g. 0.50; only for fraction",
    )
    vcpus = models.PositiveIntegerField(default=0)
    ram_gib = models.PositiveIntegerField(default=0)
    disk_gib = models.PositiveIntegerField(default=0)
    served_model = models.CharField(
        max_length=200, blank=True,
        help_text="Token endpoints only, e.g. meta-llama/Llama-3.1-8B-Instruct",
    )
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["offering", "slug"], name="flavor_unique_slug_per_offering"
            ),
            models.CheckConstraint(
                condition=Q(slice_kind__in=SliceKind.values), name="flavor_slice_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(slice_kind=SliceKind.NONE, gpu_model__isnull=True)
                | (~Q(slice_kind=SliceKind.NONE) & Q(gpu_model__isnull=False)),
                name="flavor_gpu_model_iff_gpu",
            ),
            models.CheckConstraint(
                condition=Q(slice_kind=SliceKind.WHOLE, gpu_count__gte=1)
                | Q(slice_kind__in=[SliceKind.MIG, SliceKind.FRACTION], gpu_count=1)
                | Q(slice_kind=SliceKind.NONE, gpu_count=0),
                name="flavor_gpu_count_matches_slice",
            ),
            models.CheckConstraint(
                condition=Q(slice_kind=SliceKind.MIG, mig_profile__regex=MIG_PROFILE_REGEX)
                | (~Q(slice_kind=SliceKind.MIG) & Q(mig_profile="")),
                name="flavor_mig_profile_iff_mig",
            ),
            models.CheckConstraint(
                # isnull=False is not redundant: NULL > 0 is NULL, and a CHECK passes on NULL.
                condition=Q(
                    slice_kind=SliceKind.FRACTION, gpu_fraction__isnull=False,
                    gpu_fraction__gt=0, gpu_fraction__lt=1,
                )
                | (~Q(slice_kind=SliceKind.FRACTION) & Q(gpu_fraction__isnull=True)),
                name="flavor_fraction_iff_fraction",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.offering.slug}/{self.slug}"

    @property
    def accelerator_label(self) -> str:
        gpu = self.gpu_model.name if self.gpu_model_id else ""
        if self.slice_kind == SliceKind.WHOLE:
            return f"{self.gpu_count} × {gpu}"
        if self.slice_kind == SliceKind.MIG:
            return f"MIG {self.mig_profile} of {gpu}"
        if self.slice_kind == SliceKind.FRACTION:
            percent = (self.gpu_fraction * 100).quantize(Decimal("1"))
            return f"{percent}% of {gpu}"
        return "Managed (no GPU to manage)" if self.served_model else "No GPU"

    def clean(self) -> None:
        # Rules that span the offering, which a CheckConstraint on this table cannot see.
        if not self.offering_id:
            return
        if self.offering.kind == OfferingKind.TOKEN_ENDPOINT:
            if self.slice_kind != SliceKind.NONE:
                raise ValidationError(
                    {"slice_kind": "A token endpoint flavor has no GPU: use 'none'."}
                )
            if not self.served_model:
                raise ValidationError({"served_model": "Name the model this endpoint serves."})
        elif self.served_model:
            raise ValidationError({"served_model": "Only token endpoints serve a model."})


class Image(models.Model):
    """A software environment a workload starts from."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, help_text="e.g. PyTorch 2.6 + CUDA 12.6 + JupyterLab 4")
    description = models.TextField(blank=True)
    # A JSON list of OfferingKind values: an image applies to kinds, not to single offerings, and
    # a list keeps the catalog to one table without a join.
    offering_kinds = models.JSONField(default=list, blank=True)
    # Extra Jupyter server arguments this image's notebooks start with (node agents pass them on).
    notebook_args = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def applies_to(self, kind: str) -> bool:
        return kind in (self.offering_kinds or [])

    def clean(self) -> None:
        kinds = self.offering_kinds
        if not isinstance(kinds, list) or any(k not in OfferingKind.values for k in kinds):
            choices = ", ".join(OfferingKind.values)
            raise ValidationError({"offering_kinds": f"A list of offering kinds from: {choices}."})


class PriceUnit(models.TextChoices):
    HOUR = "hour", "per instance-hour, billed per second"
    MILLION_INPUT_TOKENS = "million_input_tokens", "per 1M input tokens"
    MILLION_OUTPUT_TOKENS = "million_output_tokens", "per 1M output tokens"


PRICE_UNIT_SUFFIX = {
    PriceUnit.HOUR: "/ hour, billed per second",
    PriceUnit.MILLION_INPUT_TOKENS: "/ 1M input tokens",
    PriceUnit.MILLION_OUTPUT_TOKENS: "/ 1M output tokens",
}
TOKEN_UNITS = frozenset({PriceUnit.MILLION_INPUT_TOKENS, PriceUnit.MILLION_OUTPUT_TOKENS})


class Price(models.Model):
    """A list price of a flavor from `valid_from` on. Rows are never edited to change a price:
    a new row with a later valid_from takes over, so past usage keeps the price it ran at.

    A row with a region applies there and beats the region-less (all regions) row.
    """

    flavor = models.ForeignKey(Flavor, on_delete=models.CASCADE, related_name="prices")
    region = models.ForeignKey(
        Region, null=True, blank=True, on_delete=models.PROTECT, related_name="prices",
        help_text="Empty: applies in every region without a price of its own.",
    )
    unit = models.CharField(max_length=32, choices=PriceUnit.choices, default=PriceUnit.HOUR)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code")
    amount = models.DecimalField(max_digits=12, decimal_places=6)
    valid_from = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-valid_from", "id"]
        constraints = [
            # NULL region means "all regions" and must be unique too, hence nulls_distinct=False.
            models.UniqueConstraint(
                fields=["flavor", "region", "unit", "currency", "valid_from"],
                nulls_distinct=False,
                name="price_unique_per_flavor_region_unit_currency_start",
            ),
            models.CheckConstraint(condition=Q(unit__in=PriceUnit.values), name="price_unit_valid"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="price_currency_iso"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_amount_not_negative"),
        ]

    def __str__(self) -> str:
        where = self.region.code if self.region_id else "all regions"
        return f"{self.flavor}: {self.display} ({where}, from {self.valid_from:%Y-%m-%d %H:%M})"

    @property
    def display(self) -> str:
        """e.g. `$2.49 / hour, billed per second` or `$0.18 / 1M input tokens`."""
        money = money_format(self.amount, self.currency, exact=True)
        return f"{money} {PRICE_UNIT_SUFFIX[self.unit]}"

    def clean(self) -> None:
        if not self.flavor_id or self.unit not in PriceUnit.values:
            return
        is_tokens = self.flavor.offering.kind == OfferingKind.TOKEN_ENDPOINT
        if is_tokens != (self.unit in TOKEN_UNITS):
            raise ValidationError(
                {"unit": "Token endpoints are priced per million tokens; everything else per hour."}
            )
