"""The agent API accepts an SSH workload's running report (gpu_slice): its endpoint is checked
with the protocol's ssh_endpoint_check and stored on the runtime; notebooks still need a route."""

import pytest
from rest_framework.test import APIClient

from apps.accounts.selectors import token_digest
from apps.capacity.models import Node
from apps.catalog.models import Offering
from apps.instances.models import Instance, InstanceRuntime, InstanceState

pytestmark = pytest.mark.django_db

HOST_KEY = "ssh-ed25519 " + "A" * 68
ENDPOINT = {"host": "10.0.0.7", "port": 22001, "user": "nc-0123456789ab", "host_key": HOST_KEY}
ROUTE = {"route_slot": "slot-1", "socket": "/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock"}


@pytest.fixture
def agent(notebook_setup):
    node = notebook_setup["node"]
    Node.objects.filter(pk=node.pk).update(credential_hash=token_digest("cred"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node.pk}:cred")

    def post(instance, seq, state, **body):
        return client.post(
            f"/api/v1/agent/workloads/{instance.pk}/status", {"seq": seq, "state": state, **body}, format="json"
        )

    return post


@pytest.fixture
def ssh_instance(launch):
    """A scheduled instance of a gpu_slice offering (the launch path of that kind has its own tests)."""
    instance = launch(name="ssh-1")
    Instance.objects.filter(pk=instance.pk).update(offering=Offering.objects.filter(kind="gpu_slice").first())
    return instance


def test_a_running_ssh_report_is_accepted_and_its_endpoint_stored(agent, ssh_instance):
    assert agent(ssh_instance, 1, "starting").status_code == 202

    response = agent(ssh_instance, 2, "running", **ENDPOINT)

    assert response.status_code == 202, response.content
    assert response.json()["instance_state"] == InstanceState.RUNNING
    runtime = InstanceRuntime.objects.get(instance=ssh_instance)
    assert (runtime.ssh_host, runtime.ssh_port, runtime.ssh_user, runtime.ssh_host_key) == (
        "10.0.0.7",
        22001,
        "nc-0123456789ab",
        HOST_KEY,
    )
    assert runtime.route_slot is None


def test_a_stopped_ssh_workload_forgets_its_endpoint(agent, ssh_instance):
    agent(ssh_instance, 1, "running", **ENDPOINT)

    assert agent(ssh_instance, 2, "failed", reason="sshd exited").status_code == 202

    runtime = InstanceRuntime.objects.get(instance=ssh_instance)
    assert runtime.ssh_host is None and runtime.ssh_port is None and runtime.ssh_host_key is None


@pytest.mark.parametrize(
    "bad",
    [
        {"host": "node-1.example"},
        {"port": 22},
        {"port": 70000},
        {"user": "-oProxyCommand=x"},
        {"host_key": "ssh-rsa AAAA"},
        {"host_key": None},
    ],
)
def test_a_malformed_ssh_endpoint_is_a_400(agent, ssh_instance, bad):
    response = agent(ssh_instance, 1, "running", **{**ENDPOINT, **bad})

    assert response.status_code == 400, response.content
    assert not InstanceRuntime.objects.filter(instance=ssh_instance, ssh_host__isnull=False).exists()
    assert Instance.objects.get(pk=ssh_instance.pk).state != InstanceState.RUNNING


def test_an_ssh_workload_running_without_an_endpoint_is_a_400(agent, ssh_instance):
    response = agent(ssh_instance, 1, "running", **ROUTE)

    assert response.status_code == 400, response.content
    assert Instance.objects.get(pk=ssh_instance.pk).state != InstanceState.RUNNING


def test_an_endpoint_outside_a_running_report_is_a_400(agent, ssh_instance):
    assert agent(ssh_instance, 1, "starting", **ENDPOINT).status_code == 400


def test_notebook_reports_are_unchanged(agent, launch):
    notebook = launch()

    assert agent(notebook, 1, "running").status_code == 400  # no route: as before
    assert agent(notebook, 2, "running", **ENDPOINT).status_code == 400  # a notebook has no SSH endpoint
    response = agent(notebook, 3, "running", **ROUTE)

    assert response.status_code == 202, response.content
    runtime = InstanceRuntime.objects.get(instance=notebook)
    assert runtime.route_slot == "slot-1" and runtime.ssh_host is None
