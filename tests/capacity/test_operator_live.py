"""The operators' live pages through the real ASGI server (uvicorn), Redis channel layer and
websockets: a node's state change is pushed as the re-rendered partial; only staff may listen."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps.capacity.models import NodeState
from apps.capacity.services.nodes import node_cordon, node_maintenance
from tests.capacity.test_operator_pages import make_node
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.timeout(120)

PUSH_WITHIN_S = 5


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def open_socket(live_portal, path: str, cookie: str | None):
    headers = {"Origin": live_portal.url}
    if cookie:
        headers["Cookie"] = cookie
    return connect(live_portal.ws_url(path), additional_headers=headers, open_timeout=10)


def receive_until(ws, needle: str, timeout: float = PUSH_WITHIN_S) -> str:
    """The first pushed message containing `needle`; other pushes (e.g. a second group) are skipped."""
    deadline = time.monotonic() + timeout
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            break
        if needle in message:
            return message
        seen.append(message[:200])
    raise AssertionError(f"no push containing {needle!r} within {timeout} s; got {seen}")


def test_a_node_page_is_pushed_its_new_state(live_portal, transactional_db):
    # given an operator with a simulated node's page open
    staff = UserFactory(is_staff=True)
    node = make_node(hostname="sim-live-1", simulated=True)
    with open_socket(live_portal, f"/ws/ops/nodes/{node.pk}/", session_cookie(staff)) as ws:
        # when the node is cordoned (here, through the service, as the action button does)
        node_cordon(node=node, actor=staff, reason="live test")

        # then the page receives the re-rendered node partial with the new state
        html = receive_until(ws, 'data-testid="node-state">cordoned<')
    assert html.lstrip().startswith('<section id="ops-node"')
    assert "sim-live-1" in html and "simulated" in html and "live test" in html
    assert 'data-action="uncordon"' in html


def test_the_overview_is_pushed_with_its_own_filters(live_portal, transactional_db):
    # given an overview filtered to nodes in maintenance, and a ready node
    staff = UserFactory(is_staff=True)
    node = make_node(hostname="sim-live-2")
    with open_socket(live_portal, "/ws/ops/inventory/?state=maintenance", session_cookie(staff)) as ws:
        # when it goes into maintenance
        node_maintenance(node=node, actor=staff)

        # then the pushed overview lists it, in its new state
        html = receive_until(ws, 'data-hostname="sim-live-2"')
    assert html.lstrip().startswith('<section id="ops-inventory"')
    row = html.split('data-hostname="sim-live-2"')[1].split("</tr>")[0]
    assert 'data-testid="node-state">maintenance<' in row
    node.refresh_from_db()
    assert node.state == NodeState.MAINTENANCE


def test_pushed_action_buttons_still_post(live_portal, transactional_db):
    # given an operator's browser that loaded the node page (so it has a CSRF cookie)
    staff = UserFactory(is_staff=True)
    node = make_node(hostname="sim-live-4", state=NodeState.CORDONED)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    assert browser.get(reverse("capacity:node-detail", args=[node.pk])).status_code == 200
    cookies = "; ".join(f"{name}={browser.cookies[name].value}" for name in ("sessionid", "csrftoken"))

    with open_socket(live_portal, f"/ws/ops/nodes/{node.pk}/", cookies) as ws:
        node_maintenance(node=node, actor=staff)
        html = receive_until(ws, 'data-testid="node-state">maintenance<')

    # then the pushed form carries a token that this browser's next POST is accepted with
    token = html.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = browser.post(reverse("capacity:node-action", args=[node.pk, "uncordon"]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    node.refresh_from_db()
    assert node.state == NodeState.READY


def test_customers_and_strangers_cannot_listen(live_portal, transactional_db):
    node = make_node(hostname="sim-live-3")
    customer = session_cookie(UserFactory())
    for path in (f"/ws/ops/nodes/{node.pk}/", "/ws/ops/inventory/"):
        for cookie in (customer, None):
            with pytest.raises(InvalidStatus) as refused:
                open_socket(live_portal, path, cookie)
            assert refused.value.response.status_code == 403


def test_an_unknown_node_cannot_be_listened_to(live_portal, transactional_db):
    staff = session_cookie(UserFactory(is_staff=True))
    with pytest.raises(InvalidStatus):
        open_socket(live_portal, "/ws/ops/nodes/00000000-0000-0000-0000-000000000000/", staff)
