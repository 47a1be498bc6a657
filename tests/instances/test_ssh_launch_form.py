"""Launching a GPU instance (gpu_slice) from the launch form: a picker of the user's own SSH keys
(driven by the driver's needs_ssh_keys), clear form errors for every bad choice with nothing
half-made, and the SSH endpoint in the instance API (`ssh`), the same the instance page shows."""

import re
import shutil
import subprocess

import pytest
from django.urls import reverse

from apps.accounts.ssh_keys import ssh_key_add
from apps.capacity.models import Allocation
from apps.catalog.models import Flavor, GpuModel, Image, Offering, Region
from apps.instances.models import Instance, InstanceState
from apps.instances.services.placement import instance_schedule
from apps.instances.services.reports import workload_report_apply
from apps.instances.ssh_endpoint import instance_ssh_endpoint
from provisioning.drivers.registry import driver_for_kind
from tests.factories.accounts import UserFactory
from tests.factories.capacity import node_with_gpus

pytestmark = pytest.mark.django_db
S = InstanceState
HOST_KEY = "ssh-ed25519 " + "C" * 68


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
def gpu_flavor(notebook_setup):
    return Flavor.objects.get(offering__kind="gpu_slice", slug="1x-h100")


@pytest.fixture
def gpu_image(demo_catalog):
    return Image.objects.filter(offering_kinds__contains=["gpu_slice"]).order_by("slug").first()


def _url(org):
    return f"/orgs/{org.slug}/instances/new/"


def _form(gpu_flavor, gpu_image, **fields):
    return {"flavor": gpu_flavor.pk, "region": "us-east-1", "image": gpu_image.pk, "name": "gpu-1", **fields}


def _error(html: str, field: str) -> str:
    found = re.search(rf'data-testid="error-{field}">(.*?)</span>', html, re.S)
    return found.group(1) if found else ""


def _key_boxes(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox" name="ssh_keys"[^>]*>', html)


# --- the picker -------------------------------------------------------------------------------------


def test_the_gpu_kind_needs_keys_and_the_notebook_kind_does_not():
    # The one flag the form and the launch service both read; bare metal sets it on its driver.
    assert driver_for_kind("gpu_slice").needs_ssh_keys is True
    assert driver_for_kind("notebook").needs_ssh_keys is False
    assert driver_for_kind("gpu_slice").form_launchable is True


def test_a_gpu_flavor_offers_the_users_own_keys_and_ticks_the_only_one(client, user, org, gpu_flavor, public_key):
    # Given one key of the user's and one of someone else's
    mine = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    ssh_key_add(user=UserFactory(), name="intruder", public_key=public_key("intruder"))
    client.force_login(user)

    # When the form is opened for a GPU instance
    html = client.get(_url(org), {"flavor": gpu_flavor.pk}).content.decode()

    # Then it lists the user's key by name and fingerprint, ticked, and nobody else's
    boxes = _key_boxes(html)
    assert len(boxes) == 1 and f'value="{mine.pk}"' in boxes[0] and "checked" in boxes[0]
    assert re.search(rf"laptop <code[^>]*>{re.escape(mine.fingerprint)}</code>", html) and "intruder" not in html
    # And only the images that run GPU instances
    assert "Ubuntu 22.04" in html and "JupyterLab 4 (node" not in html


def test_with_two_keys_none_is_ticked_for_the_user(client, user, org, gpu_flavor, public_key):
    ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    ssh_key_add(user=user, name="desktop", public_key=public_key("desktop"))
    client.force_login(user)

    html = client.get(_url(org), {"flavor": gpu_flavor.pk}).content.decode()

    boxes = _key_boxes(html)
    assert len(boxes) == 2 and not any("checked" in box for box in boxes)


def test_a_notebook_flavor_has_no_key_picker(client, user, org, notebook_setup, public_key):
    ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    client.force_login(user)

    html = client.get(_url(org), {"flavor": notebook_setup["flavor"].pk}).content.decode()

    assert 'data-testid="field-ssh_keys"' not in html and not _key_boxes(html)


def test_switching_to_a_gpu_flavor_rerenders_the_picker_with_the_ticked_keys(client, user, org, gpu_flavor, public_key):
    # Given two keys, the second ticked before the flavor changed (htmx GET of the form's values)
    ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    desktop = ssh_key_add(user=user, name="desktop", public_key=public_key("desktop"))
    client.force_login(user)

    html = client.get(
        _url(org), {"flavor": gpu_flavor.pk, "ssh_keys": [desktop.pk], "name": "typed"}, HTTP_HX_REQUEST="true"
    ).content.decode()

    # Then the re-rendered choices hold the picker with that key still ticked
    assert 'id="launch-region-choices"' in html
    ticked = [box for box in _key_boxes(html) if "checked" in box]
    assert len(ticked) == 1 and f'value="{desktop.pk}"' in ticked[0]


def test_a_user_without_keys_is_first_offered_a_notebook(client, user, org, notebook_setup, gpu_flavor):
    client.force_login(user)

    html = client.get(_url(org)).content.decode()

    selected = re.search(r'<option value="(\d+)"[^>]*selected', html).group(1)
    assert selected == str(notebook_setup["flavor"].pk)


def test_the_storefront_launches_gpu_instances_from_the_form(client, user, org, demo_catalog):
    client.force_login(user)

    html = client.get("/").content.decode()

    gpu = html.split('id="offering-gpu-instances"', 1)[1].split("</article>", 1)[0]
    assert 'data-testid="launch"' in gpu and "Launch with the API" not in gpu
    # The launch redirect can open the form on an offering (the card's link may pass it).
    reply = client.get(reverse("instances:launch-redirect"), {"offering": "gpu-instances"})
    assert reply["Location"] == f"/orgs/{org.slug}/instances/new/?offering=gpu-instances"


@pytest.mark.parametrize("has_key", [True, False])
def test_the_gpu_instances_card_preselects_a_gpu_instance_flavor(
    client, user, org, notebook_setup, gpu_flavor, public_key, has_key
):
    # Given a user with or without a key (without: the picker says how to add one)
    if has_key:
        ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    client.force_login(user)

    # When the form is opened on the GPU instances offering
    html = client.get(_url(org), {"offering": "gpu-instances"}).content.decode()

    # Then a GPU instance flavor with free capacity is chosen, with the key picker
    selected = re.search(r'<option value="(\d+)"[^>]*selected', html).group(1)
    assert selected == str(gpu_flavor.pk)
    assert 'data-testid="field-ssh_keys"' in html
    assert ('data-testid="no-ssh-keys"' in html) is not has_key


# --- launching, and every refusal leaving nothing behind ----------------------------------------------


def test_launching_with_the_chosen_key_copies_it_onto_the_instance(
    client, user, org, gpu_flavor, gpu_image, public_key
):
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    ssh_key_add(user=user, name="desktop", public_key=public_key("desktop"))
    client.force_login(user)

    reply = client.post(_url(org), _form(gpu_flavor, gpu_image, ssh_keys=[laptop.pk]))

    assert reply.status_code == 302, _error(reply.content.decode(), "ssh_keys")
    instance = Instance.objects.get(name="gpu-1")
    assert instance.offering.kind == "gpu_slice" and instance.state == S.REQUESTED
    assert instance.ssh_authorized_keys == [laptop.public_key]


def _refused(reply) -> str:
    assert reply.status_code == 400
    assert not Instance.objects.exists() and not Allocation.objects.exists()
    return reply.content.decode()


def test_no_keys_at_all_is_a_form_error_with_the_way_to_add_one(client, user, org, gpu_flavor, gpu_image):
    client.force_login(user)

    html = _refused(client.post(_url(org), _form(gpu_flavor, gpu_image, name="kept-name")))

    assert "You have no SSH keys yet" in _error(html, "ssh_keys")
    assert 'href="/ssh-keys/"' in html
    assert 'value="kept-name"' in html  # what was typed stays


def test_no_key_ticked_is_a_form_error(client, user, org, gpu_flavor, gpu_image, public_key):
    ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    ssh_key_add(user=user, name="desktop", public_key=public_key("desktop"))
    client.force_login(user)

    html = _refused(client.post(_url(org), _form(gpu_flavor, gpu_image)))

    assert "Choose at least one of your SSH keys" in _error(html, "ssh_keys")


@pytest.mark.parametrize("tampered", ["theirs", "999999", "abc"])
def test_a_key_that_is_not_the_users_is_a_form_error(client, user, org, gpu_flavor, gpu_image, public_key, tampered):
    mine = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    theirs = ssh_key_add(user=UserFactory(), name="theirs", public_key=public_key("theirs"))
    client.force_login(user)
    key = theirs.pk if tampered == "theirs" else tampered

    html = _refused(client.post(_url(org), _form(gpu_flavor, gpu_image, ssh_keys=[mine.pk, key])))

    assert "Choose only your own SSH keys" in _error(html, "ssh_keys")
    assert theirs.fingerprint not in html


@pytest.mark.parametrize("flavor", ["abc", "999999", "not-launchable"])
def test_a_bad_flavor_is_a_form_error(client, user, org, gpu_flavor, gpu_image, public_key, flavor):
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    if flavor == "not-launchable":  # a real flavor of a kind nothing launches (Kubeflow)
        flavor = Flavor.objects.filter(offering__kind="kubeflow").first().pk
    client.force_login(user)

    html = _refused(client.post(_url(org), {**_form(gpu_flavor, gpu_image, ssh_keys=[laptop.pk]), "flavor": flavor}))

    assert _error(html, "flavor")


def test_a_region_without_capacity_is_a_form_error(client, user, org, gpu_flavor, gpu_image, public_key):
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    client.force_login(user)

    html = _refused(client.post(_url(org), _form(gpu_flavor, gpu_image, region="eu-north-1", ssh_keys=[laptop.pk])))

    assert "Sold out in eu-north-1" in _error(html, "region")


# --- the A100 MIG host of the local fleet is sold -----------------------------------------------------


def test_an_a100_mig_slice_lands_on_the_a100_mig_host(client, user, org, gpu_image, public_key, demo_catalog):
    # Given the default fleet's second host: 4 A100s split 3g.40gb + 2g.20gb + 2 × 1g.10gb
    a100 = GpuModel.objects.get(slug="a100-80gb-sxm")
    host = node_with_gpus(
        Region.objects.get(code="us-east-1"), a100, n=4, mig_profiles=["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    )
    flavor = Flavor.objects.get(offering__slug="gpu-instances", slug="a100-mig-1g-10gb")
    laptop = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))
    client.force_login(user)

    # Then the form offers its 1g.10gb slices, and a launch of one is placed there
    html = client.get(_url(org), {"flavor": flavor.pk}).content.decode()
    assert "A100 MIG 1g.10gb" in html and "8 free" in html
    reply = client.post(_url(org), _form(flavor, gpu_image, ssh_keys=[laptop.pk]))
    assert reply.status_code == 302
    instance = instance_schedule(instance_id=Instance.objects.get(name="gpu-1").pk)
    assert instance.node_id == host.pk
    assert instance.allocation.slices.get().mig_device.profile == "1g.10gb"


# --- the API's ssh field ------------------------------------------------------------------------------------


@pytest.fixture
def running_ssh(user, org, gpu_flavor, gpu_image, public_key, notebook_setup, django_capture_on_commit_callbacks):
    """Launch GPU instances with the user's key and report each running with an endpoint."""
    from apps.instances.services.actions import instance_launch

    key = ssh_key_add(user=user, name="laptop", public_key=public_key("laptop"))

    def make(name="gpu-1", port=22001):
        with django_capture_on_commit_callbacks(execute=False):
            instance = instance_launch(
                access=notebook_setup["access"],
                flavor=gpu_flavor,
                image=gpu_image,
                region=notebook_setup["region"],
                name=name,
                ssh_keys=[key.pk],
            )
        instance_schedule(instance_id=instance.pk)
        workload_report_apply(
            node=notebook_setup["node"],
            instance_id=instance.pk,
            seq=1,
            state="running",
            host="10.0.0.7",
            port=port,
            user=f"nc-{port:012d}",
            host_key=HOST_KEY,
        )
        return Instance.objects.get(pk=instance.pk)

    return make


def test_the_api_gives_the_ssh_endpoint_of_a_running_instance(api_client, user, org, running_ssh):
    instance = running_ssh()
    api_client.force_login(user)

    detail = api_client.get(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/").json()
    listed = api_client.get(f"/api/v1/organizations/{org.slug}/instances/").json()["results"]

    user_name = "nc-000000022001"
    assert detail["ssh"] == {
        "host": "10.0.0.7",
        "port": 22001,
        "user": user_name,
        "command": f"ssh -p 22001 {user_name}@10.0.0.7",
        "known_hosts": f"[10.0.0.7]:22001 {HOST_KEY}",
    }
    assert [row["ssh"] for row in listed] == [detail["ssh"]]
    assert detail["notebook_url"] is None


def test_the_page_shows_the_command_the_api_gives(client, api_client, user, org, running_ssh):
    instance = running_ssh()
    client.force_login(user)
    api_client.force_login(user)

    html = client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()
    ssh = api_client.get(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/").json()["ssh"]

    assert f'data-testid="ssh-command">{ssh["command"]}</code>' in html
    assert f'data-testid="ssh-known-hosts">{ssh["known_hosts"]}</code>' in html


def test_no_ssh_endpoint_before_it_runs_nor_after_it_stops(api_client, user, org, running_ssh, notebook_setup, launch):
    instance = running_ssh()
    workload_report_apply(node=notebook_setup["node"], instance_id=instance.pk, seq=2, state="failed", reason="x")
    notebook = launch(name="nb-1")
    api_client.force_login(user)

    rows = api_client.get(f"/api/v1/organizations/{org.slug}/instances/").json()["results"]

    assert {row["name"]: row["ssh"] for row in rows} == {"gpu-1": None, "nb-1": None}
    assert instance_ssh_endpoint(instance=Instance.objects.get(pk=notebook.pk)) is None


def test_the_list_query_count_does_not_grow_with_running_ssh_instances(
    api_client, user, org, running_ssh, django_assert_max_num_queries
):
    running_ssh(name="gpu-1", port=22001)
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/instances/"
    with django_assert_max_num_queries(10) as few:
        api_client.get(url)

    for n in range(2, 7):
        running_ssh(name=f"gpu-{n}", port=22000 + n)

    with django_assert_max_num_queries(len(few.captured_queries)):
        rows = api_client.get(url).json()["results"]
    assert len(rows) == 6 and all(row["ssh"] for row in rows)


def test_another_tenant_gets_no_ssh_endpoint(api_client, org, running_ssh):
    instance = running_ssh()
    api_client.force_login(UserFactory())

    reply = api_client.get(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/")

    assert reply.status_code == 404


def test_the_gpu_instances_offering_is_public_and_launchable(demo_catalog):
    from apps.catalog.selectors import offering_is_launchable

    assert offering_is_launchable(offering=Offering.objects.get(slug="gpu-instances"))
