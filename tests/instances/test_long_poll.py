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
