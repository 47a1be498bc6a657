"""Notebooks through every real piece: the API launch, a Celery worker placing it, a real agent
starting JupyterLab, nginx routing /nb/… after asking the portal, and a stop releasing capacity.
Access: the owner gets in, another logged-in user gets 403, an anonymous visitor goes to log in."""

import re
import time

import httpx
import pytest

from apps.capacity.models import Gpu
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Image, Region
from apps.instances.models import Instance, InstanceState
from tests.factories.accounts import PASSWORD as FACTORY_PASSWORD
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.processes import agent_start
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
S = InstanceState


def logged_in_client(base: str, email: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/accounts/login/", data={"csrfmiddlewaretoken": token, "login": email, "password": FACTORY_PASSWORD}
    )
    assert response.status_code == 302, response.text[:500]
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    client.headers["Referer"] = base + "/"
    return client


@pytest.fixture
def notebook_node(live_portal, celery_worker, celery_beat, transactional_db, demo_catalog, tmp_path, process_logs):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=live_portal.url,
        name="nb-node",
        state_file=tmp_path / "state.json",
        token=token,
        notebook_pool=1,
    )
    wait_until(lambda: Gpu.objects.filter(node__hostname="nb-node").count() == 8)
    yield agent
    agent.stop()


def test_launch_open_refuse_strangers_and_stop(live_portal, notebook_node):
    base = live_portal.url
    owner, stranger = UserFactory(), UserFactory()
    org = OrganizationFactory(owner=owner)
    OrganizationFactory(owner=stranger)
    client = logged_in_client(base, owner.email)
    image = Image.objects.get(slug="jupyterlab-4-host")

    # When the owner launches a notebook through the API
    launched = client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        json={
            "flavor": "notebooks/notebook-1x-h100",
            "image": image.slug,
            "region": "us-east-1",
            "name": "it-notebook",
        },
    )
    assert launched.status_code == 201, launched.text
    instance_id = launched.json()["id"]

    # Then it becomes running, and its Jupyter API answers through the front proxy
    detail = wait_until(
        lambda: (
            (r := client.get(f"/api/v1/organizations/{org.slug}/instances/{instance_id}/").json())
            and r["state"] in ("running", "failed")
            and r
        ),
        timeout=90,
    )
    assert detail["state"] == "running", detail
    notebook = detail["notebook_url"].removesuffix("lab")
    status = client.get(f"{notebook}api/status")
    assert status.status_code == 200 and "started" in status.json()
    steps = [e["message"] for e in detail["events"]]
    assert steps[0] == "Launch requested" and steps[1].startswith("Scheduled on node nb-node (simulated)")
    assert steps[-1].startswith("Ready in ")

    # And a stranger is refused, an anonymous visitor is sent to log in
    assert logged_in_client(base, stranger.email).get(f"{notebook}api/status").status_code == 403
    anonymous = httpx.get(f"{base}{notebook}api/status")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous.headers["location"]

    # When the owner stops it, the server goes, the route goes and the GPU is free again
    assert client.post(f"/api/v1/organizations/{org.slug}/instances/{instance_id}/stop/").status_code == 200
    wait_until(lambda: Instance.objects.get(pk=instance_id).state == S.STOPPED, timeout=30)
    assert not Gpu.objects.filter(node__hostname="nb-node", allocated_milli__gt=0).exists()
    time.sleep(2.5)  # the proxy caches an authorisation for 2 s
    assert client.get(f"{notebook}api/status").status_code == 404
