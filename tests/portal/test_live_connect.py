"""A live page's socket through the real ASGI server, Redis channel layer and websockets, opened
as static/js/live.js opens it (portal/live.py): with the version the page shows, the socket sends
nothing on connect when that is current, the partial when it is not (a change between render and
subscription, or while a dropped socket was down), and never a copy of what the page shows."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.accounts.selectors import membership_get, organization_access_get
from apps.accounts.services import members_group, membership_role_change
from apps.instances.services.actions import instance_stop_request
from portal.live import live_notify
from tests.billing.budgets.spend import instance_running
from tests.capacity.test_operator_live import open_socket, session_cookie
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.support.live import live_page_read

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def shows_role(html: str, email: str, role: str) -> bool:
    """The member's row in the pushed partial shows `role` (the table's markup aside)."""
    row = re.search(rf'data-member="{re.escape(email)}".*?</tr>', html, re.S)
    return bool(row) and re.search(rf'data-testid="role"[^>]*>\s*{role}\s*<', row.group(0), re.I) is not None


def members_page(owner, org):
    client = Client()
    client.force_login(owner)
    return live_page_read(client, f"/orgs/{org.slug}/members/")


def role_change(owner, org, member, role):
    access = organization_access_get(user=owner, slug=org.slug)
    membership_role_change(access=access, membership=membership_get(organization=org, membership_id=member.pk),
                           role=role)


@pytest.fixture
def team():
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    member = MembershipFactory(organization=org, role="member")
    return owner, org, member


def test_a_current_page_is_sent_nothing_on_connect(live_portal, transactional_db, team):
    # Given the members page (its partial holds the invite form), current when its socket opens
    owner, org, member = team
    page = members_page(owner, org)
    with open_socket(live_portal, page.announce(), session_cookie(owner)) as ws:
        # When a change is announced that changes nothing the page shows, then a real one
        live_notify(group=members_group(org))
        role_change(owner, org, member, "admin")
        # Then the first message is the real change: no copy of the page's own partial came first
        html = ws.recv(timeout=10)
    assert shows_role(html, member.user.email, "admin")


def test_an_old_version_is_sent_the_partial_on_connect(live_portal, transactional_db, team):
    # Given the members page, rendered before a member's role changed
    owner, org, member = team
    page = members_page(owner, org)
    role_change(owner, org, member, "admin")

    # When its socket opens with the version the page shows
    with open_socket(live_portal, page.announce(), session_cookie(owner)) as ws:
        html = ws.recv(timeout=10)

    # Then the first message is the partial as it is now, with its new version
    assert shows_role(html, member.user.email, "admin")
    assert html.lstrip().startswith('<section id="members"') and page.version not in html
    assert 'data-live-version="' in html


def test_a_reconnect_after_a_change_is_sent_the_partial(live_portal, transactional_db):
    # Given an instance page whose socket opened current, then dropped
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    instance = instance_running(organization=org, hourly="2.00", since_s=30)
    client = Client()
    client.force_login(owner)
    page = live_page_read(client, f"/orgs/{org.slug}/instances/{instance.pk}/")
    cookie = session_cookie(owner)
    with open_socket(live_portal, page.announce(), cookie):
        pass

    # When the instance stops while the socket is down, and the socket reconnects announcing
    # what the page still shows
    instance_stop_request(instance=instance, message="Stopping: test", source="portal")
    with open_socket(live_portal, page.announce(), cookie) as ws:
        html = ws.recv(timeout=10)
        # Then the partial is sent, in its new state
        assert 'data-state="stopping"' in html
        pushed = html.split('data-live-version="')[1].split('"')[0]

    # And a reconnect announcing the pushed version gets only the next change
    with open_socket(live_portal, page.announce(pushed), cookie) as ws:
        instance.refresh_from_db()
        instance.name = "renamed-while-live"
        instance.save(update_fields=["name"])
        live_notify(group=f"instance-{instance.pk}")
        html = ws.recv(timeout=10)
    assert "renamed-while-live" in html and 'data-state="stopping"' in html


def test_a_page_without_a_version_is_sent_nothing_on_connect(live_portal, transactional_db, team):
    # Given a socket opened with no version (a page without the script, or one showing a form's
    # errors), then a change
    owner, org, member = team
    with open_socket(live_portal, members_page(owner, org).announce(None), session_cookie(owner)) as ws:
        role_change(owner, org, member, "viewer")
        # Then the first message is that change
        html = ws.recv(timeout=10)
    assert shows_role(html, member.user.email, "viewer")
    assert html.lstrip().startswith('<section id="members"') and 'data-live-version="' in html
