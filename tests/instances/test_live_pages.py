"""The instance pages' sockets through the real ASGI server, Redis channel layer and websockets:
a change saved between a page's render and its socket's subscription still reaches the page,
because the page says which version it shows (static/js/live.js) and the socket sends the partial
on connect when that is no longer the current one; a page that is current gets nothing until the
next change."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.instances.services.actions import instance_stop_request
from tests.billing.budgets.spend import instance_running
from tests.capacity.test_operator_live import open_socket, session_cookie
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.live import live_page_read

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def rendered_socket_path(owner, page: str) -> str:
    """The socket address the page asks for, with the version it shows, as live.js opens it."""
    client = Client()
    client.force_login(owner)
    return live_page_read(client, page).announce()


@pytest.mark.parametrize("which", ["detail", "list"])
def test_a_change_between_render_and_subscribe_is_sent_on_connect(live_portal, transactional_db, which):
    # Given an owner's instance page, rendered while the instance was running
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    instance = instance_running(organization=org, hourly="2.00", since_s=30)
    page = f"/orgs/{org.slug}/instances/" + (f"{instance.pk}/" if which == "detail" else "")
    path = rendered_socket_path(owner, page)
    assert "?v=" in path

    # When the instance stops before the page's socket has subscribed
    instance_stop_request(instance=instance, message="Stopping: test", source="portal")

    # Then the first thing the socket sends is the partial in the instance's current state
    with open_socket(live_portal, path, session_cookie(owner)) as ws:
        html = ws.recv(timeout=10)
    assert 'data-state="stopping"' in html or ">Stopping<" in html


def test_a_current_page_gets_only_the_next_change(live_portal, transactional_db):
    # Given an owner's instance page whose socket subscribes with the version it shows
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    instance = instance_running(organization=org, hourly="2.00", since_s=30)
    path = rendered_socket_path(owner, f"/orgs/{org.slug}/instances/{instance.pk}/")
    shown = path.rsplit("v=", 1)[1]
    with open_socket(live_portal, path, session_cookie(owner)) as ws:
        # When the instance then stops
        instance_stop_request(instance=instance, message="Stopping: test", source="portal")
        # Then that change arrives, and nothing before it was a copy of the page's own partial
        # (which would wipe a form). The running cost's "Running for N s" is content too: a
        # second that passed between render and connect is sent, as a different version.
        seen = []
        while 'data-state="stopping"' not in (html := ws.recv(timeout=10)):
            seen.append(html)
    assert all(f'data-live-version="{shown}"' not in earlier for earlier in seen)
