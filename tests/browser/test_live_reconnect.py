"""A network blip on a live page, in headless Chromium against the real portal: the page's socket
drops while a change is made, the page says it is offline, the htmx ws extension reconnects, and
static/js/live.js re-opens the socket with the version the page shows, so the change reaches the
page without a reload (portal/live.py). The blip is made with Playwright's websocket routing:
every socket is passed through to the real server, except that the first one's messages from the
server are lost while the change is made, and then it is closed as a failed server would."""

import re

import pytest
from django.test import Client
from playwright.sync_api import expect

from apps.instances.services.actions import instance_stop_request
from tests.billing.budgets.spend import instance_running
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.live import live_page_read

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_change_made_while_the_socket_is_down_reaches_the_page(live_portal, browser_context, transactional_db):
    base = live_portal.url
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    instance = instance_running(organization=org, hourly="2.00", since_s=30)
    url = f"{base}/orgs/{org.slug}/instances/{instance.pk}/"
    sockets = []  # (address the page asked for, route, server side, whether server messages pass)

    def route(ws):
        server = ws.connect_to_server()
        entry = {"url": ws.url, "route": ws, "server": server, "pass": True}
        server.on_message(lambda message: entry["pass"] and ws.send(message))
        ws.on_message(lambda message: server.send(message))
        sockets.append(entry)

    page = browser_context.new_page()
    page.route_web_socket(re.compile(r".*/ws/orgs/.*"), route)
    log_in(page, base, owner.email, PASSWORD)
    page.goto(url)
    # A fixed back-off, so the offline state lasts long enough to be seen
    page.evaluate("htmx.config.wsReconnectDelay = () => 1500")
    indicator = page.locator(".live-indicator")
    expect(indicator).to_have_attribute("data-state", "up")
    shown = page.locator("#instance-detail").get_attribute("data-live-version")
    assert sockets[0]["url"].endswith(f"?v={shown}")
    page.evaluate("window.__noReload = true")

    # Given the page's socket loses what the server sends, while the instance stops
    sockets[0]["pass"] = False
    instance_stop_request(instance=instance, message="Stopping: test", source="portal")
    client = Client()
    client.force_login(owner)
    assert live_page_read(client, url).version != shown  # the change the page has not seen

    # When the connection then fails (1011, as a server in trouble closes it)
    sockets[0]["route"].close(code=1011, reason="blip")

    # Then the page says it is offline, reconnects announcing what it still shows, and catches up
    expect(indicator).to_have_attribute("data-state", "down")
    expect(indicator).to_contain_text("Offline")
    expect(page.locator("#instance-detail")).to_have_attribute("data-state", "stopping", timeout=30_000)
    expect(indicator).to_have_attribute("data-state", "up")
    assert len(sockets) == 2 and sockets[1]["url"].endswith(f"?v={shown}")
    assert page.evaluate("window.__noReload") is True
