"""Launching a GPU instance (gpu_slice) over the API: it takes the ids of the launching user's
own SSH keys, copies their public key lines onto the instance, and its node's desired state is
the agent driver's GpuSliceSpec with exactly those keys."""

import shutil
import subprocess

import pytest

from apps.accounts.ssh_keys import ssh_key_add, ssh_key_delete
from apps.catalog.models import Flavor, Image
from apps.instances.models import Instance
from apps.instances.selectors import node_desired_workloads
from apps.instances.services.placement import instance_schedule
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def public_key(tmp_path):
    """A real public key line made by ssh-keygen, one per name."""
    assert shutil.which("ssh-keygen"), "ssh-keygen is needed (Debian: apt-get install openssh-client)"

    def make(name):
        path = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return path.with_suffix(".pub").read_text().strip()

    return make


@pytest.fixture
def ssh_launch(api_client, user, org, notebook_setup):
    flavor = Flavor.objects.get(offering__kind="gpu_slice", slug="1x-h100")
    image = Image.objects.filter(offering_kinds__contains=["gpu_slice"]).first()
    api_client.force_login(user)

    def post(name="gpu-1", **body):
        payload = {"flavor": f"{flavor.offering.slug}/{flavor.slug}", "image": image.slug, "region": "us-east-1"}
        return api_client.post(
            f"/api/v1/organizations/{org.slug}/instances/", {**payload, "name": name, **body}, format="json"
        )

    return post


def test_a_gpu_instance_launches_with_the_chosen_keys_and_its_agent_gets_them(
    ssh_launch, user, public_key, notebook_setup
):
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    ssh_key_add(user=user, name="desktop", public_key=public_key("desktop"))

    reply = ssh_launch(ssh_keys=[laptop.pk])

    assert reply.status_code == 201, reply.json()
    instance = Instance.objects.get(pk=reply.json()["id"])
    assert instance.ssh_authorized_keys == [laptop.public_key]
    instance_schedule(instance_id=instance.pk)
    [spec] = node_desired_workloads(node_id=notebook_setup["node"].pk)
    assert spec["kind"] == "gpu_slice" and spec["authorized_keys"] == [laptop.public_key]
    assert len(spec["gpus"]) == 1


def test_a_key_deleted_later_does_not_change_a_launched_instance(ssh_launch, user, public_key):
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    instance = Instance.objects.get(pk=ssh_launch(ssh_keys=[laptop.pk]).json()["id"])

    ssh_key_delete(user=user, key_id=laptop.pk)

    instance.refresh_from_db()
    assert instance.ssh_authorized_keys == [laptop.public_key]


def test_another_users_key_is_a_400(ssh_launch, public_key):
    theirs = ssh_key_add(user=UserFactory(), name="theirs", public_key=public_key("theirs"))

    reply = ssh_launch(ssh_keys=[theirs.pk])

    assert reply.status_code == 400 and "ssh_keys" in reply.json(), reply.json()
    assert not Instance.objects.exists()


@pytest.mark.parametrize("keys", [None, [], ["x"], [0]])
def test_a_gpu_instance_without_a_valid_key_choice_is_a_400(ssh_launch, keys):
    reply = ssh_launch(**({} if keys is None else {"ssh_keys": keys}))

    assert reply.status_code == 400 and "ssh_keys" in reply.json(), reply.json()
    assert not Instance.objects.exists()


def test_a_notebook_launch_needs_no_keys(api_client, user, org, notebook_setup):
    api_client.force_login(user)
    flavor, image = notebook_setup["flavor"], notebook_setup["image"]
    payload = {
        "flavor": f"{flavor.offering.slug}/{flavor.slug}",
        "image": image.slug,
        "region": "us-east-1",
        "name": "nb",
    }

    reply = api_client.post(f"/api/v1/organizations/{org.slug}/instances/", payload, format="json")

    assert reply.status_code == 201, reply.json()
    assert Instance.objects.get(pk=reply.json()["id"]).ssh_authorized_keys == []
