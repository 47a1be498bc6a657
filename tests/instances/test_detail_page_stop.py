"""The instance page through a stop: while it stops it says so and still shows the GPU; once the
agent confirms, neither the released GPU nor a "Stopping…" line is left on it (issue 11)."""

import pytest
from django.test import Client

from apps.instances.services.reports import workload_report_apply

pytestmark = pytest.mark.django_db

SOCKET = "/run/neocloud/0123456789ab/0123456789abcdef/jupyter.sock"


def test_a_stopped_instance_shows_no_released_gpu_and_no_stopping_line(launch, notebook_setup, user, org):
    # Given a running notebook, its page open in the owner's browser
    node = notebook_setup["node"]
    instance = launch()
    workload_report_apply(node=node, instance_id=instance.pk, seq=1, state="running", route_slot="s1", socket=SOCKET)
    browser = Client()
    browser.force_login(user)
    page = f"/orgs/{org.slug}/instances/{instance.pk}/"
    assert 'data-testid="gpus"' in browser.get(page).content.decode()

    # When the owner stops it
    html = browser.post(f"{page}stop/", follow=True).content.decode()

    # Then the page says it is stopping, once, inside the live partial, and still shows the GPU
    assert 'data-state="stopping"' in html and 'data-testid="stopping"' in html
    assert html.count("Stopping…") == 1 and 'data-testid="gpus"' in html

    # When the agent confirms, then the page shows neither the released GPU nor "Stopping…"
    workload_report_apply(node=node, instance_id=instance.pk, seq=2, state="stopped")
    html = browser.get(page).content.decode()
    assert 'data-state="stopped"' in html
    assert 'data-testid="gpus"' not in html and 'data-testid="stopping"' not in html and "Stopping…" not in html
