"""A running GPU instance's page (gpu_slice) shows how to log in: the ssh command and a
known_hosts line from the host key its agent reported, in the page's live partial."""

import pytest
from django.template.loader import render_to_string

from apps.accounts.selectors import organization_access_get
from apps.catalog.models import Offering
from apps.instances.models import Instance
from apps.instances.services.reports import workload_report_apply
from apps.instances.views.pages import DETAIL_PARTIAL, detail_context

pytestmark = pytest.mark.django_db

HOST_KEY = "ssh-ed25519 " + "B" * 68
ENDPOINT = {"host": "10.0.0.7", "port": 22001, "user": "nc-0123456789ab", "host_key": HOST_KEY}


@pytest.fixture
def ssh_instance(launch):
    instance = launch(name="ssh-1")
    Instance.objects.filter(pk=instance.pk).update(offering=Offering.objects.filter(kind="gpu_slice").first())
    return instance


def _page(client, org, instance):
    return client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()


def test_a_running_ssh_instance_shows_the_command_and_known_hosts_line(client, user, org, ssh_instance, notebook_setup):
    workload_report_apply(node=notebook_setup["node"], instance_id=ssh_instance.pk, seq=1, state="running", **ENDPOINT)
    client.force_login(user)

    html = _page(client, org, ssh_instance)

    assert "ssh -p 22001 nc-0123456789ab@10.0.0.7</code>" in html
    assert f"[10.0.0.7]:22001 {HOST_KEY}</code>" in html
    assert 'data-testid="open"' not in html  # no JupyterLab to open
    # The live partial the socket sends is the same, so the lines appear without a reload.
    partial = render_to_string(
        DETAIL_PARTIAL, detail_context(organization_access_get(user=user, slug=org.slug), ssh_instance.pk)
    )
    assert 'data-testid="ssh-command"' in partial


def test_a_stopped_ssh_instance_shows_no_login(client, user, org, ssh_instance, notebook_setup):
    node = notebook_setup["node"]
    workload_report_apply(node=node, instance_id=ssh_instance.pk, seq=1, state="running", **ENDPOINT)
    workload_report_apply(node=node, instance_id=ssh_instance.pk, seq=2, state="failed", reason="sshd exited")
    client.force_login(user)

    html = _page(client, org, ssh_instance)

    assert 'data-testid="ssh-access"' not in html and "ssh -p" not in html


def test_a_running_notebook_page_is_unchanged(client, user, org, launch, notebook_setup):
    notebook = launch()
    workload_report_apply(
        node=notebook_setup["node"],
        instance_id=notebook.pk,
        seq=1,
        state="running",
        route_slot="slot-1",
        socket="/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock",
    )
    client.force_login(user)

    html = _page(client, org, notebook)

    assert 'data-testid="open"' in html and 'data-testid="ssh-access"' not in html
