"""Quotas: ceilings per organization and per project, and capacity guaranteed to other tenants."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.models import Project
from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Allocation, Gpu, NodeState, Quota
from apps.capacity.services.allocations import allocation_create, allocation_release
from apps.capacity.services.nodes import node_state_transition
from apps.capacity.services.quotas import gpus_display, quota_check, quota_set
from tests.factories.accounts import OrganizationFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import FlavorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    return OrganizationFactory(name="Acme AI")


def whole(model, n: int):
    return FlavorFactory(gpu_model=model, gpu_count=n)


def refused(**kwargs) -> AllocationRefused:
    before = (Allocation.objects.count(), sorted(Gpu.objects.values_list("pk", "allocated_milli")))
    with pytest.raises(AllocationRefused) as info:
        allocation_create(**kwargs)
    assert (Allocation.objects.count(), sorted(Gpu.objects.values_list("pk", "allocated_milli"))) == before
    return info.value


# --- quota_set -------------------------------------------------------------------------------------


def test_quota_set_creates_then_replaces_one_row(acme):
    first = quota_set(organization=acme, max_gpus=Decimal("4"))
    second = quota_set(organization=acme, max_gpus=Decimal("8"), guaranteed_gpus=Decimal("2.5"))

    assert first.pk == second.pk and Quota.objects.filter(organization=acme).count() == 1
    second.refresh_from_db()
    assert (second.max_gpus, second.guaranteed_gpus, second.project) == (Decimal("8"), Decimal("2.5"), None)


def test_a_project_quota_is_its_own_row(acme):
    project = Project.objects.create(organization=acme, name="Training", slug="training")
    quota_set(organization=acme, max_gpus=Decimal("8"))
    quota_set(organization=acme, project=project, max_gpus=Decimal("2"))

    assert Quota.objects.get(organization=acme, project=project).max_gpus == Decimal("2")
    assert Quota.objects.get(organization=acme, project__isnull=True).max_gpus == Decimal("8")


@pytest.mark.parametrize(
    ("max_gpus", "guaranteed", "field"),
    [
        (Decimal("-1"), Decimal("0"), "max_gpus"),
        (Decimal("4"), Decimal("-1"), "guaranteed_gpus"),
        (Decimal("4"), Decimal("5"), "guaranteed_gpus"),
        (Decimal("0.0001"), Decimal("0"), "max_gpus"),
    ],
)
def test_quota_set_refuses_impossible_limits(acme, max_gpus, guaranteed, field):
    with pytest.raises(ValidationError) as info:
        quota_set(organization=acme, max_gpus=max_gpus, guaranteed_gpus=guaranteed)
    assert field in info.value.message_dict
    assert not Quota.objects.exists()


@pytest.mark.parametrize("value", ["lots", Decimal("NaN"), Decimal("Infinity")])
def test_quota_set_refuses_what_is_not_a_number(acme, value):
    with pytest.raises(ValidationError):
        quota_set(organization=acme, max_gpus=value)


def test_quota_set_refuses_another_organizations_project(acme):
    other = Project.objects.create(organization=OrganizationFactory(), name="Theirs", slug="theirs")
    with pytest.raises(ValidationError):
        quota_set(organization=acme, project=other, max_gpus=Decimal("1"))


def test_gpus_display():
    assert [gpus_display(m) for m in (3500, 1000, 428, 0, 16000)] == ["3.5", "1", "0.428", "0", "16"]


# --- ceilings --------------------------------------------------------------------------------------


def test_the_organization_ceiling_refuses_with_a_clear_message(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    quota_set(organization=acme, max_gpus=Decimal("4"))
    allocation_create(organization=acme, flavor=whole(h100, 2), region=region)
    allocation_create(organization=acme, flavor=whole(h100, 1), region=region)
    allocation_create(organization=acme, flavor=FlavorFactory(gpu_model=h100, fraction=True), region=region)

    refusal = refused(organization=acme, flavor=whole(h100, 1), region=region)

    assert refusal.reason == "quota_exceeded"
    assert refusal.message == "Quota exceeded: Acme AI may use at most 4 GPUs and holds 3.5; this needs 1."
    assert refusal.as_dict() == {"reason": "quota_exceeded", "detail": refusal.message}
    # Exactly up to the ceiling is fine.
    allocation_create(organization=acme, flavor=FlavorFactory(gpu_model=h100, fraction=True), region=region)


def test_released_allocations_stop_counting_and_lost_ones_still_count(acme, region, h100):
    node = node_with_gpus(region, h100, n=8)
    quota_set(organization=acme, max_gpus=Decimal("4"))
    first = allocation_create(organization=acme, flavor=whole(h100, 4), region=region)
    assert refused(organization=acme, flavor=whole(h100, 1), region=region).reason == "quota_exceeded"

    allocation_release(allocation_id=first.pk)
    second = allocation_create(organization=acme, flavor=whole(h100, 4), region=region)
    node_with_gpus(region, h100, n=8)
    node_state_transition(node_id=node.pk, to_state=NodeState.DOWN, reason="missed heartbeats")

    assert Allocation.objects.get(pk=second.pk).state == "lost"
    assert refused(organization=acme, flavor=whole(h100, 1), region=region).reason == "quota_exceeded"


def test_other_organizations_are_not_limited_by_one_quota(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    quota_set(organization=acme, max_gpus=Decimal("0"))

    assert refused(organization=acme, flavor=whole(h100, 1), region=region).reason == "quota_exceeded"
    assert allocation_create(organization=OrganizationFactory(), flavor=whole(h100, 8), region=region)


def test_a_project_ceiling_limits_that_project_only(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    training = Project.objects.create(organization=acme, name="Training", slug="training")
    serving = Project.objects.create(organization=acme, name="Serving", slug="serving")
    quota_set(organization=acme, project=training, max_gpus=Decimal("1"))
    allocation_create(organization=acme, project=training, flavor=whole(h100, 1), region=region)

    refusal = refused(organization=acme, project=training, flavor=whole(h100, 1), region=region)

    assert refusal.reason == "quota_exceeded"
    assert refusal.message == (
        "Quota exceeded: project Training of Acme AI may use at most 1 GPU and holds 1; this needs 1."
    )
    assert allocation_create(organization=acme, project=serving, flavor=whole(h100, 2), region=region)
    assert allocation_create(organization=acme, flavor=whole(h100, 2), region=region)


def test_the_organization_ceiling_counts_every_project(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    training = Project.objects.create(organization=acme, name="Training", slug="training")
    quota_set(organization=acme, max_gpus=Decimal("2"))
    quota_set(organization=acme, project=training, max_gpus=Decimal("8"))
    allocation_create(organization=acme, flavor=whole(h100, 2), region=region)

    assert refused(organization=acme, project=training, flavor=whole(h100, 1), region=region).reason == "quota_exceeded"


def test_quota_check_alone_passes_without_a_quota(acme):
    quota_check(organization=acme, project=None, gpu_milli=10**6)


# --- guarantees ------------------------------------------------------------------------------------


def test_capacity_guaranteed_to_another_organization_stays_free(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    node_with_gpus(region, h100, n=8)
    lab = OrganizationFactory(name="Guaranteed Lab")
    quota_set(organization=lab, max_gpus=Decimal("16"), guaranteed_gpus=Decimal("8"))

    allocation_create(organization=acme, flavor=whole(h100, 8), region=region)  # leaves exactly 8 free
    refusal = refused(organization=acme, flavor=whole(h100, 1), region=region)

    assert refusal.reason == "reserved_for_guarantees"
    assert "us-east-1" in refusal.message and "Guaranteed Lab" not in refusal.message
    # The guaranteed organization itself may use its guarantee…
    allocation_create(organization=lab, flavor=whole(h100, 4), region=region)
    # …and what it uses is no longer held back, but what is still guaranteed is.
    assert refused(organization=acme, flavor=whole(h100, 1), region=region).reason == "reserved_for_guarantees"
    allocation_create(organization=lab, flavor=whole(h100, 4), region=region)
    assert refused(organization=acme, flavor=whole(h100, 1), region=region).reason == "no_capacity"


def test_a_used_up_guarantee_reserves_nothing(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    node_with_gpus(region, h100, n=8)
    lab = OrganizationFactory(name="Guaranteed Lab")
    quota_set(organization=lab, max_gpus=Decimal("16"), guaranteed_gpus=Decimal("2"))
    allocation_create(organization=lab, flavor=whole(h100, 4), region=region)  # more than its guarantee

    assert allocation_create(organization=acme, flavor=whole(h100, 8), region=region)
    assert allocation_create(organization=acme, flavor=whole(h100, 4), region=region)


def test_a_project_guarantee_reserves_nothing_against_other_tenants(acme, region, h100):
    node_with_gpus(region, h100, n=8)
    lab = OrganizationFactory(name="Guaranteed Lab")
    project = Project.objects.create(organization=lab, name="Research", slug="research")
    quota_set(organization=lab, project=project, max_gpus=Decimal("8"), guaranteed_gpus=Decimal("8"))

    assert allocation_create(organization=acme, flavor=whole(h100, 8), region=region)
