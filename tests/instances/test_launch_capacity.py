"""No accept-then-fail: a launch holds its capacity in the request, is refused (409, with the
availability by region) when there is none, or waits in a FIFO queue when it asked to."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.selectors import organization_access_get
from apps.capacity.models import Allocation, AllocationState
from apps.instances.models import Instance, InstanceState
from apps.instances.services.actions import instance_launch, instance_stop
from apps.instances.services.placement import instance_schedule
from apps.instances.services.queue import _line_head_place, instances_queue_place
from apps.instances.services.reports import workload_report_apply

S = InstanceState
FLAVOR = "notebooks/notebook-1x-h100"


def _url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/instances/"


def _body(name: str, region: str = "us-east-1", **extra) -> dict:
    return {"flavor": FLAVOR, "image": "jupyterlab-4-host", "region": region, "name": name, **extra}


def _fill(launch, n: int = 8) -> list[Instance]:
    return [launch(name=f"fill-{i}") for i in range(n)]


def _stopped_by_agent(node, instance) -> None:
    """The owner stops it and the agent confirms: its capacity is released."""
    instance_stop(access=_access_of(instance), instance=instance)
    workload_report_apply(node=node, instance_id=instance.pk, seq=10, state="stopped", started_at=timezone.now())


def _access_of(instance):
    return organization_access_get(user=instance.owner, slug=instance.organization.slug)


@pytest.mark.django_db
def test_a_launch_holds_its_capacity_before_it_is_answered(api_client, user, org, notebook_setup):
    api_client.force_login(user)
    reply = api_client.post(_url(org), _body("first"), format="json")
    assert reply.status_code == 201, reply.json()
    instance = Instance.objects.get(pk=reply.json()["id"])
    # Requested, not yet on its node's list, but its GPU is already held
    assert instance.state == S.REQUESTED and instance.allocation.state == AllocationState.ACTIVE
    scheduled = instance_schedule(instance_id=instance.pk)
    assert scheduled.state == S.SCHEDULED and scheduled.allocation_id == instance.allocation_id
    assert scheduled.node_id == instance.allocation.node_id


@pytest.mark.django_db
def test_no_capacity_is_409_at_request_time_with_the_availability(api_client, user, org, notebook_setup, launch):
    # Given the only H100 node full
    _fill(launch)
    api_client.force_login(user)
    # When one more is asked for
    reply = api_client.post(_url(org), _body("one-too-many"), format="json")
    # Then it is refused now, saying where there is room (nowhere), and nothing is saved
    assert reply.status_code == 409
    body = reply.json()
    assert body["reason"] == "no_capacity" and "us-east-1" in body["detail"]
    by_region = {row["region"]: row["available"] for row in body["availability"]}
    assert by_region == {"us-east-1": 0, "eu-west-1": 0, "eu-north-1": 0}
    assert not Instance.objects.filter(name="one-too-many").exists()


@pytest.mark.django_db
def test_a_sold_out_region_is_409_and_the_answer_names_the_region_with_room(api_client, user, org, notebook_setup):
    api_client.force_login(user)
    reply = api_client.post(_url(org), _body("far", region="eu-north-1"), format="json")
    assert reply.status_code == 409
    assert {"region": "us-east-1", "name": notebook_setup["region"].name, "available": 8} in reply.json()[
        "availability"
    ]


@pytest.mark.django_db
def test_queue_true_is_202_queued_holding_nothing(api_client, user, org, notebook_setup, launch):
    _fill(launch)
    api_client.force_login(user)
    reply = api_client.post(_url(org), _body("waiting", queue=True), format="json")
    assert reply.status_code == 202
    assert reply.json()["state"] == "queued"
    queued = Instance.objects.get(name="waiting")
    assert queued.allocation_id is None and queued.node_id is None
    assert list(queued.events.values_list("to_state", flat=True)) == [S.REQUESTED, S.QUEUED]


@pytest.mark.django_db
def test_the_queue_is_placed_first_come_first_served_when_capacity_frees(launch, notebook_setup):
    node = notebook_setup["node"]
    running = _fill(launch)
    first = launch(name="first", schedule=False, queue=True)
    second = launch(name="second", schedule=False, queue=True)
    assert (first.state, second.state) == (S.QUEUED, S.QUEUED)
    assert instances_queue_place() == []  # nothing free: both wait

    # When one running instance stops and its capacity is released
    _stopped_by_agent(node, running[0])
    placed = instances_queue_place()

    # Then the first in line, and only it, gets the capacity
    assert placed == [first.pk]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == S.REQUESTED and first.allocation.state == AllocationState.ACTIVE
    assert second.state == S.QUEUED
    assert instance_schedule(instance_id=first.pk).state == S.SCHEDULED

    _stopped_by_agent(node, running[1])
    assert instances_queue_place() == [second.pk]


@pytest.mark.django_db
def test_a_queued_launch_can_be_cancelled_and_is_never_placed(launch, notebook_setup):
    running = _fill(launch)
    queued = launch(name="changed-my-mind", schedule=False, queue=True)
    stopped = instance_stop(access=notebook_setup["access"], instance=queued)
    assert stopped.state == S.STOPPED
    _stopped_by_agent(notebook_setup["node"], running[0])
    assert instances_queue_place() == []
    assert Allocation.objects.filter(holder=f"instance:{queued.pk}").count() == 0


@pytest.mark.django_db
def test_a_requested_instance_stopped_before_its_node_has_it_gives_its_capacity_back(launch, notebook_setup):
    instance = launch(name="brief", schedule=False)
    held = instance.allocation_id
    instance_stop(access=notebook_setup["access"], instance=instance)
    assert Allocation.objects.get(pk=held).state == AllocationState.RELEASED


# --- real concurrency: many launches at once on real PostgreSQL ---------------------------------

LAUNCHES = 64  # 8 GPUs free; PostgreSQL allows 100 connections


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("queue", [False, True])
def test_64_concurrent_launches_for_8_free_gpus_never_accept_then_fail(notebook_setup, queue):
    s = notebook_setup
    barrier = threading.Barrier(LAUNCHES)
    outcomes: Counter = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            try:
                instance = instance_launch(
                    access=s["access"],
                    flavor=s["flavor"],
                    image=s["image"],
                    region=s["region"],
                    name=f"race-{n}",
                    queue=queue,
                )
                outcome = instance.state
            except Exception as exc:  # noqa: BLE001 - LaunchUnplaceable is the expected refusal
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(LAUNCHES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert not errors, errors
    refused = "queued" if queue else "LaunchUnplaceable"
    assert outcomes == Counter({"requested": 8, refused: 56}), outcomes
    # Every accepted launch holds a distinct live allocation; nothing queued holds one. (A Celery
    # worker of the test session may already have handed accepted ones to the node: SCHEDULED.)
    accepted = Instance.objects.filter(state__in=[S.REQUESTED, S.SCHEDULED])
    assert accepted.count() == 8
    assert Allocation.objects.filter(state=AllocationState.ACTIVE).count() == 8
    assert len({i.allocation_id for i in accepted}) == 8
    assert not Instance.objects.filter(state=S.QUEUED, allocation__isnull=False).exists()
    assert Instance.objects.filter(state=S.QUEUED).count() == (56 if queue else 0)


@pytest.mark.django_db
def test_the_page_of_a_queued_launch_shows_its_place_in_line_and_what_it_waits_for(client, user, org, launch):
    _fill(launch)
    launch(name="first", schedule=False, queue=True)
    second = launch(name="second", schedule=False, queue=True)
    client.force_login(user)
    html = client.get(f"/orgs/{org.slug}/instances/{second.pk}/").content.decode()
    assert 'data-testid="queue-position"' in html
    assert "2nd in line</strong> for 1 × NVIDIA H100 80GB SXM in us-east-1; 0 of 8 free." in html
    assert "Leave the queue" in html


@pytest.mark.django_db
def test_a_queue_line_of_large_ids_takes_its_lock(notebook_setup):
    # Given ids whose old lock key (region × 1,000,003 + flavor) passed PostgreSQL's int4: a
    # long-lived database (or the test suite's) gets there, and the line was then never placed
    region_id, flavor_id = 2194, 77

    # When the line's head is placed, Then its lock is taken (an empty line: nothing to place)
    assert _line_head_place(region_id=region_id, flavor_id=flavor_id, skip=frozenset()) == ("empty", None)
