"""The database keeps flavors consistent with their slice kind, whoever writes them."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.catalog.models import OfferingKind, SliceKind
from tests.factories.catalog import (
    FlavorFactory,
    GpuModelFactory,
    ImageFactory,
    OfferingFactory,
    PriceFactory,
    RegionFactory,
)

pytestmark = pytest.mark.django_db

NO_GPU = {"gpu_model": None, "gpu_count": 0}


@pytest.mark.parametrize("fields", [
    pytest.param({"slice_kind": SliceKind.WHOLE, "gpu_count": 8}, id="whole"),
    pytest.param({"slice_kind": SliceKind.MIG, "mig_profile": "3g.40gb"}, id="mig"),
    pytest.param({"slice_kind": SliceKind.MIG, "mig_profile": "1g.10gb+me"}, id="mig-media"),
    pytest.param({"slice_kind": SliceKind.FRACTION, "gpu_fraction": Decimal("0.25")},
                 id="fraction"),
    pytest.param({"slice_kind": SliceKind.NONE, **NO_GPU}, id="none"),
])
def test_consistent_flavors_are_saved(fields):
    flavor = FlavorFactory(**fields)
    assert flavor.pk is not None


@pytest.mark.parametrize("fields", [
    pytest.param({"slice_kind": SliceKind.WHOLE, "gpu_count": 0}, id="whole-without-gpus"),
    pytest.param({"slice_kind": SliceKind.WHOLE, "gpu_model": None}, id="whole-without-model"),
    pytest.param({"slice_kind": SliceKind.WHOLE, "mig_profile": "1g.10gb"},
                 id="whole-with-profile"),
    pytest.param({"slice_kind": SliceKind.MIG, "mig_profile": ""}, id="mig-without-profile"),
    pytest.param({"slice_kind": SliceKind.MIG, "mig_profile": "ten gigs"}, id="mig-bad-profile"),
    pytest.param({"slice_kind": SliceKind.MIG, "mig_profile": "1g.10gb", "gpu_count": 2},
                 id="mig-on-two-gpus"),
    pytest.param({"slice_kind": SliceKind.FRACTION}, id="fraction-without-share"),
    pytest.param({"slice_kind": SliceKind.FRACTION, "gpu_fraction": Decimal("1.00")},
                 id="fraction-of-one"),
    pytest.param({"slice_kind": SliceKind.FRACTION, "gpu_fraction": Decimal("0")},
                 id="fraction-of-zero"),
    pytest.param({"slice_kind": SliceKind.WHOLE, "gpu_fraction": Decimal("0.5")},
                 id="whole-with-share"),
    pytest.param({"slice_kind": SliceKind.NONE, "gpu_count": 0}, id="none-with-model"),
    pytest.param({"slice_kind": SliceKind.NONE, "gpu_model": None, "gpu_count": 1},
                 id="none-with-gpus"),
    pytest.param({"slice_kind": "quarter"}, id="unknown-slice-kind"),
])
def test_inconsistent_flavors_are_refused_by_the_database(fields):
    # given flavor fields that contradict their slice kind
    # when saved, bypassing forms and services, then PostgreSQL refuses the row
    with pytest.raises(IntegrityError), transaction.atomic():
        FlavorFactory(**fields)


def test_flavor_slugs_are_unique_within_an_offering_only():
    # given a flavor "small" in one offering
    flavor = FlavorFactory(slug="small")

    # then another offering may use the slug, the same offering may not
    FlavorFactory(slug="small", offering=OfferingFactory())
    with pytest.raises(IntegrityError), transaction.atomic():
        FlavorFactory(slug="small", offering=flavor.offering)


def test_a_token_endpoint_flavor_must_name_its_model():
    # given a token endpoint flavor without a served model
    flavor = FlavorFactory.build(
        offering=OfferingFactory(kind=OfferingKind.TOKEN_ENDPOINT),
        slice_kind=SliceKind.NONE, gpu_model=None, gpu_count=0,
    )
    # when validated (as the admin does), then it says what is missing
    with pytest.raises(ValidationError, match="Name the model"):
        flavor.full_clean()


def test_a_gpu_flavor_cannot_serve_a_model():
    flavor = FlavorFactory.build(
        offering=OfferingFactory(), gpu_model=GpuModelFactory(), served_model="meta-llama/x"
    )
    with pytest.raises(ValidationError, match="Only token endpoints"):
        flavor.full_clean()


def test_a_token_endpoint_is_priced_per_token_not_per_hour():
    price = PriceFactory.build(flavor=FlavorFactory(token_endpoint=True), region=None)
    with pytest.raises(ValidationError, match="per million tokens"):
        price.full_clean()


def test_an_image_lists_only_known_offering_kinds():
    image = ImageFactory.build(offering_kinds=["notebook", "mainframe"])
    with pytest.raises(ValidationError, match="offering kinds"):
        image.full_clean()


@pytest.mark.parametrize("country", ["us", "U", "U1"])
def test_a_region_country_is_two_upper_case_letters(country):
    with pytest.raises(IntegrityError), transaction.atomic():
        RegionFactory(country=country)


def test_an_unknown_offering_kind_is_refused():
    with pytest.raises(IntegrityError), transaction.atomic():
        OfferingFactory(kind="mainframe")
