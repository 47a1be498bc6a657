"""The agents' desired-state long-poll through the real ASGI server: it waits, survives quiet
periods longer than the Redis client's default timeout, and wakes up on a change."""

import threading
import time

import httpx
import pytest

from apps.accounts.selectors import token_digest
from apps.capacity.models import Node
from apps.instances.services.placement import instance_schedule

pytestmark = pytest.mark.integration


def test_a_quiet_long_poll_answers_cleanly_and_a_launch_wakes_it(live_portal, transactional_db, launch, notebook_setup):
    node = notebook_setup["node"]
    Node.objects.filter(pk=node.pk).update(credential_hash=token_digest("cred"))
    headers = {"Authorization": f"Node {node.pk}:cred"}
    url = f"{live_portal.url}/api/v1/agent/workloads"

    first = httpx.get(url, params={"version": 0, "wait": 1}, headers=headers, timeout=30).json()
    quiet_started = time.monotonic()
    quiet = httpx.get(url, params={"version": first["version"], "wait": 7}, headers=headers, timeout=30)
    assert quiet.status_code == 200 and quiet.json()["version"] == first["version"]
    assert time.monotonic() - quiet_started >= 6.5  # it really waited, past redis-py's 5 s default

    woken: dict = {}

    def poll():
        began = time.monotonic()
        woken["reply"] = httpx.get(url, params={"version": first["version"], "wait": 20}, headers=headers, timeout=30)
        woken["after"] = time.monotonic() - began

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1)
    instance = launch(name="wakes-the-agent", schedule=False)
    instance_schedule(instance_id=instance.pk)
    poller.join(30)
    assert woken["reply"].status_code == 200
    assert woken["after"] < 5, woken["after"]
    assert [w["id"] for w in woken["reply"].json()["workloads"]] == [str(instance.pk)]


# --- the version: one column, changed only with the desired state -------------------------------


def _notified_groups(monkeypatch) -> list[str]:
    """The Channels groups told after each commit from now on (the long-poll wakes on these)."""
    groups: list[str] = []
    monkeypatch.setattr("portal.live.live_notify", lambda *, group: groups.append(group))
    return groups


def _running_report(node, instance, seq, **kw):
    from django.utils import timezone

    from apps.instances.services.reports import workload_report_apply

    return workload_report_apply(
        node=node,
        instance_id=instance.pk,
        seq=seq,
        state="running",
        route_slot=str(instance.pk),
        socket="/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock",
        started_at=timezone.now(),
        **kw,
    )


def test_the_version_changes_with_the_desired_state_and_only_then(transactional_db, launch, notebook_setup):
    from apps.instances.api.agent import desired_state
    from apps.instances.services.actions import instance_stop
    from apps.instances.services.reports import workload_report_apply

    node = notebook_setup["node"]
    before = desired_state(node.pk)["version"]
    # Given a placed notebook: its node's list changed, so did the version
    instance = launch(name="versioned")
    placed = desired_state(node.pk)
    assert placed["version"] == before + 1 and [w["state"] for w in placed["workloads"]] == ["running"]

    # When the agent reports starting, running, and activity (reports that change nothing it is to do)
    workload_report_apply(node=node, instance_id=instance.pk, seq=1, state="starting")
    _running_report(node, instance, 2)
    _running_report(node, instance, 3, activity={"kernels": 1, "busy_kernels": 0})
    # Then the version is the same: nothing new for the agent
    assert desired_state(node.pk) == placed

    # When the user stops it, the version changes with the list
    instance_stop(access=notebook_setup["access"], instance=instance)
    stopping = desired_state(node.pk)
    assert stopping["version"] == placed["version"] + 1
    assert [w["state"] for w in stopping["workloads"]] == ["stopped"]

    # And the agent confirming the stop changes nothing it is to do
    workload_report_apply(node=node, instance_id=instance.pk, seq=4, state="stopped")
    assert desired_state(node.pk) == stopping


def test_the_agents_own_report_does_not_wake_its_long_poll(transactional_db, launch, notebook_setup, monkeypatch):
    from apps.instances.services.actions import instance_stop
    from apps.instances.services.desired import node_workloads_group
    from apps.instances.services.reports import workload_report_apply

    node = notebook_setup["node"]
    instance = launch(name="no-echo")
    groups = _notified_groups(monkeypatch)
    # When the agent reports the server starting and then running
    workload_report_apply(node=node, instance_id=instance.pk, seq=1, state="starting")
    _running_report(node, instance, 2)
    # Then its long-poll's group was not told (the instance's pages were)
    assert node_workloads_group(node.pk) not in groups
    assert any(str(instance.pk) in group for group in groups)
    # While a stop, which changes what the agent is to do, tells it once
    instance_stop(access=notebook_setup["access"], instance=instance)
    assert groups.count(node_workloads_group(node.pk)) == 1


def test_a_rolled_back_change_leaves_the_version_as_it_was(transactional_db, launch, notebook_setup):
    from django.db import transaction

    from apps.instances.api.agent import desired_state
    from apps.instances.services.actions import instance_stop

    node = notebook_setup["node"]
    instance = launch(name="rolled-back")
    placed = desired_state(node.pk)

    class Undo(Exception):
        pass

    # When a stop is rolled back (say a later step of its transaction failed)
    with pytest.raises(Undo), transaction.atomic():
        instance_stop(access=notebook_setup["access"], instance=instance)
        raise Undo
    # Then the version and the list are as they were
    assert desired_state(node.pk) == placed
