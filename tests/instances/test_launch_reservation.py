"""Launching into a reservation (API `reservation` on the launch): refused with a 400 and the
reason, nothing half-made, unless the reservation is the caller's, has started, and is of the
flavor's GPU model and region; then the instance runs on the reservation's held GPUs (more in
test_reservation_instances.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.capacity.models import Allocation
from apps.capacity.services.reservations import reservation_create, reservation_start, when
from apps.instances.models import Instance
from apps.instances.services.actions import instance_start, instance_stop
from apps.instances.services.placement import instance_schedule
from apps.instances.services.reports import workload_report_apply
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.django_db
FLAVOR = "notebooks/notebook-1x-h100"


def _url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/instances/"


def _body(reservation, name="in-reservation") -> dict:
    return {
        "flavor": FLAVOR,
        "image": "jupyterlab-4-host",
        "region": "us-east-1",
        "name": name,
        "reservation": str(reservation.pk),
    }


def _on_demand(name, **extra) -> dict:
    return {"flavor": FLAVOR, "image": "jupyterlab-4-host", "region": "us-east-1", "name": name, **extra}


def _reserve(organization, setup, *, starts_in: timedelta, gpus: int = 2):
    start = timezone.now() + starts_in
    return reservation_create(
        organization=organization,
        flavor=setup["flavor"],
        region=setup["region"],
        gpus=gpus,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )


def test_launching_into_a_reservation_not_yet_started_is_a_400_and_creates_nothing(
    api_client, user, org, notebook_setup
):
    # given a reservation of the organization starting tomorrow
    reservation = _reserve(org, notebook_setup, starts_in=timedelta(days=1))
    api_client.force_login(user)
    # when a launch names it
    reply = api_client.post(_url(org), _body(reservation), format="json")
    # then it is refused with the reason, and nothing was made or held
    assert reply.status_code == 400
    assert reply.json()["reservation"][0].startswith("This reservation starts at ")
    assert not Instance.objects.exists()


def test_another_tenants_or_an_unknown_reservation_is_a_400(api_client, user, org, notebook_setup):
    theirs = _reserve(OrganizationFactory(), notebook_setup, starts_in=timedelta(0))
    api_client.force_login(user)
    reply = api_client.post(_url(org), _body(theirs), format="json")
    assert reply.status_code == 400 and reply.json()["reservation"] == ["No such reservation in this organization."]
    reply = api_client.post(_url(org), {**_body(theirs), "reservation": "not-a-uuid"}, format="json")
    assert reply.status_code == 400 and "reservation" in reply.json()
    assert not Instance.objects.exists()


def test_a_started_reservation_lets_the_launch_through(api_client, user, org, notebook_setup):
    reservation = _reserve(org, notebook_setup, starts_in=timedelta(0))
    reservation_start(reservation_id=reservation.pk)
    api_client.force_login(user)
    reply = api_client.post(_url(org), _body(reservation), format="json")
    assert reply.status_code == 201, reply.json()


def test_on_demand_launches_keep_clear_of_a_reservation_starting_soon(api_client, user, org, notebook_setup):
    # given 8 H100 GPUs and another organization's reservation of 6 of them starting in 2 hours
    reserved = _reserve(OrganizationFactory(), notebook_setup, starts_in=timedelta(hours=2), gpus=6)
    api_client.force_login(user)
    # when on-demand launches take GPUs, the first two fit beside it
    for name in ("first", "second"):
        assert api_client.post(_url(org), _on_demand(name), format="json").status_code == 201
    # then a third, which would leave 5 free for the 6 promised, is refused with the reason, nothing made
    reply = api_client.post(_url(org), _on_demand("third", queue=True), format="json")
    assert reply.status_code == 400
    assert reply.json()["flavor"] == [
        f"The NVIDIA H100 80GB SXM GPUs still free in us-east-1 are reserved from {when(reserved.starts_at)}; "
        "choose another region, a later time, or launch into a reservation of your own."
    ]
    assert Instance.objects.count() == 2
    # and at its start the reservation is held in full
    assert reservation_start(reservation_id=reserved.pk, now=reserved.starts_at).state == "active"


def test_a_reservation_days_away_does_not_hold_back_launches_now(api_client, user, org, notebook_setup):
    _reserve(OrganizationFactory(), notebook_setup, starts_in=timedelta(days=3), gpus=8)
    api_client.force_login(user)
    assert api_client.post(_url(org), _on_demand("now"), format="json").status_code == 201


def test_a_stopped_instance_started_again_keeps_clear_too(launch, notebook_setup):
    # given a stopped instance, and then all 8 GPUs reserved from 2 hours on by another organization
    setup = notebook_setup
    instance = launch(name="again")
    instance_stop(access=setup["access"], instance=instance)
    workload_report_apply(
        node=setup["node"], instance_id=instance.pk, seq=10, state="stopped", started_at=timezone.now()
    )
    _reserve(OrganizationFactory(), setup, starts_in=timedelta(hours=2), gpus=8)
    # when it is started again, its placement is refused with the reason and nothing stays held
    instance_start(access=setup["access"], instance=Instance.objects.get(pk=instance.pk))
    placed = instance_schedule(instance_id=instance.pk)
    assert placed.state == "failed"
    assert "are reserved from" in placed.state_reason
    assert not Allocation.objects.filter(holder=f"instance:{instance.pk}", state="active").exists()


def test_on_a_full_fleet_a_launch_into_ones_own_active_reservation_runs_on_its_gpus(
    api_client, user, org, notebook_setup
):
    # given all 8 GPUs of the fleet held by the organization's active reservation
    reservation = _reserve(org, notebook_setup, starts_in=timedelta(0), gpus=8)
    reservation = reservation_start(reservation_id=reservation.pk)
    api_client.force_login(user)
    # when it launches into it, then the launch is accepted (no longer a 409 for want of free GPUs)
    reply = api_client.post(_url(org), _body(reservation), format="json")
    assert reply.status_code == 201, reply.json()
    # and the instance holds one of the reservation's GPUs, lent from its gang
    instance = Instance.objects.get(name="in-reservation")
    assert instance.reservation_id == reservation.pk
    held = Allocation.objects.get(pk=instance.allocation_id)
    assert held.gang_id == reservation.gang_id and held.gpu_milli == 1000
    assert Allocation.objects.get(holder=reservation.holder, state="active").gpu_milli == 7000
    # while an on-demand launch still finds nothing free
    assert api_client.post(_url(org), _on_demand("on-demand"), format="json").status_code == 409
