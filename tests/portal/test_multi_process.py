"""The portal as several processes on one PostgreSQL and one Redis (issue 15, point 2).

Two web processes and two Celery workers behind the front proxy: a change made anywhere (a web
process, a worker) reaches a live page whatever web process its socket is on, because every
process publishes through Channels' Redis layer; and a web process killed outright loses no
launch, because a launch lives in PostgreSQL and the Celery queue, not in the process that took
it, and nginx sends the next requests to the process still up.
"""

from __future__ import annotations

import html
import os
import re
import signal
import threading
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.conf import global_settings
from websockets.sync.client import connect

from apps.capacity.models import Node, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region
from apps.instances.models import Instance, InstanceState
from devtools.launcher import main
from devtools.proxy import front_proxy_start, upstream_block
from tests.capacity.test_operator_live import receive_until
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.launcher import portal_log_in
from tests.support.live import LivePage
from tests.support.multi_process import multi_portal_start
from tests.support.processes import agent_start, free_port
from tests.support.waiting import wait_until

S = InstanceState
NOTEBOOK = {"flavor": "notebooks/notebook-1x-h100", "image": "jupyterlab-4-host", "region": "us-east-1"}
# Generous bounds for a failing test only: a JupyterLab start on a busy 2-core machine is slow.
RUN_WITHIN_S = 240


# --- the variables --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORTAL_WEB_WORKERS", "0"),
        ("PORTAL_WEB_WORKERS", "two"),
        ("PORTAL_CELERY_WORKERS", "-1"),
        ("PORTAL_CELERY_WORKERS", "99"),
        ("PORTAL_CELERY_CONCURRENCY", "1.5"),
    ],
)
def test_a_bad_process_count_is_one_line_and_starts_nothing(capsys, tmp_path, monkeypatch, variable, value):
    # Given a bad value in one of the variables
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    # When the run command starts
    code = main(["--port", str(free_port())])
    # Then it says which variable and why, in one line, and started nothing (no database folder)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and variable in err and repr(value) in err, err
    assert not (tmp_path / "postgres").exists()


# --- the front proxy over several web processes ---------------------------------------------------


def test_one_web_process_keeps_the_upstream_it_always_had():
    assert upstream_block(["127.0.0.1:8001"]) == "upstream portal { server 127.0.0.1:8001; keepalive 32; }"


def _backend(name: str) -> ThreadingHTTPServer:
    """A stand-in web process that says who answered, to GET and to POST."""

    class Answer(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_requests_go_to_the_web_process_still_up(tmp_path):
    # Given nginx in front of two web processes, both answering
    first, second = _backend("first"), _backend("second")
    proxy = front_proxy_start(
        root=tmp_path / "nginx",
        listen=f"127.0.0.1:{free_port()}",
        portal=[f"127.0.0.1:{s.server_address[1]}" for s in (first, second)],
        secret="s",
    )
    try:
        answered = {httpx.get(f"{proxy.url}/anything").text for _ in range(6)}
        assert answered == {"first", "second"}

        # When one of them goes away (its port refuses connections)
        first.shutdown()
        first.server_close()

        # Then every request, a POST included (it was never sent to the dead one), gets the other
        # (the POST first: it is what finds the dead one refusing)
        for _ in range(6):
            posted = httpx.post(f"{proxy.url}/api/launch", json={"n": 1})
            assert (posted.status_code, posted.text) == (200, "second")
            got = httpx.get(f"{proxy.url}/anything")
            assert (got.status_code, got.text) == (200, "second")
    finally:
        proxy.stop()
        second.shutdown()


# --- two web processes and two workers on one database and Redis ---------------------------------


@pytest.fixture
def production_passwords(settings):
    """The user logs in through the real form of the real processes, which check passwords with
    the production hashers; the suite's fast test hasher would make a hash they cannot read."""
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS


@pytest.fixture
def multi_portal(django_db_setup, process_logs):
    portal = multi_portal_start(process_logs, web=2, workers=2)
    yield portal
    portal.stop()


def _live_page(client: httpx.Client, url: str) -> LivePage:
    """The page as a browser loads it: the socket it asks for and the version it shows."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    socket = re.search(r'ws-connect="([^"]+)"', page.text)
    version = re.search(r'data-live-version="([^"]+)"', page.text)
    return LivePage(socket_path=html.unescape(socket.group(1)), version=version and version.group(1))


def _socket_on(web_url: str, page: LivePage, client: httpx.Client):
    """The page's socket, opened on that web process as static/js/live.js opens it."""
    headers = {"Origin": web_url, "Cookie": f"sessionid={client.cookies['sessionid']}"}
    return connect(web_url.replace("http://", "ws://") + page.announce(), additional_headers=headers, open_timeout=30)


def _launch(client: httpx.Client, base: str, slug: str, name: str) -> str:
    launched = client.post(f"{base}/api/v1/organizations/{slug}/instances/", json={**NOTEBOOK, "name": name})
    assert launched.status_code == 201, launched.text
    return launched.json()["id"]


def _state(instance_id: str) -> str:
    return Instance.objects.get(pk=instance_id).state


@contextmanager
def _frozen(managed):
    """SIGSTOP a process group for the block (SIGCONT after, whatever happens)."""
    os.killpg(managed.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(managed.process.pid, signal.SIGCONT)


def _runs(instance_id: str) -> bool:
    state = _state(instance_id)
    assert state not in (S.FAILED, S.LOST, S.STOPPED, S.TERMINATED), Instance.objects.get(pk=instance_id).state_reason
    return state == S.RUNNING


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_two_web_processes_and_two_workers_push_to_any_page_and_lose_no_launch(
    multi_portal, transactional_db, demo_catalog, production_passwords, process_logs, tmp_path
):
    portal = multi_portal
    web_a, web_b = portal.web_urls
    # Given a GPU host's agent that reaches the portal through the front proxy, as in production
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=portal.url,
        name="multi-node",
        state_file=tmp_path / "state.json",
        token=token,
        notebook_pool=1,
    )
    try:
        wait_until(
            lambda: Node.objects.filter(hostname="multi-node", state=NodeState.READY).exists(),
            timeout=120,
            what="the agent's node to register and be ready",
        )
        # And a customer logged in through the front proxy (the session is in the shared database,
        # so its cookie is good on every web process)
        user = UserFactory()
        org = OrganizationFactory(owner=user, name="Multi Labs", credits=Decimal("1000.00"))
        with httpx.Client(base_url=portal.url, timeout=60) as client:
            assert portal_log_in(client, user.email, PASSWORD).status_code == 302

            # --- a push reaches a page on the other web process ---
            # When a notebook is launched through web process A while the workers are paused,
            # so that nothing has happened to it yet when its page opens on web process B
            portal.workers_pause()
            first = _launch(client, web_a, org.slug, "multi-1")
            page = _live_page(client, f"{web_b}/orgs/{org.slug}/instances/{first}/")
            assert _state(first) == S.REQUESTED
            with _socket_on(web_b, page, client) as socket_b:
                portal.workers_resume()
                # Then B's socket is pushed the page's partial as the launch runs: the steps are
                # published by a Celery worker and by the web process that takes the agent's report
                pushed = receive_until(socket_b, 'data-state="running"', timeout=RUN_WITHIN_S)
                assert first in pushed and _state(first) == S.RUNNING
                # And a change made through web process A alone reaches the socket on B: a stop,
                # with the agent frozen so that nothing else (its "stopped") moves the instance
                with _frozen(agent):
                    stopped = client.post(f"{web_a}/api/v1/organizations/{org.slug}/instances/{first}/stop/")
                    assert stopped.status_code in (200, 202), stopped.text
                    receive_until(socket_b, 'data-state="stopping"', timeout=RUN_WITHIN_S)

            # --- killing a web process loses no launch ---
            # Given a launch that web process A took and committed, not yet carried out
            portal.workers_pause()
            second = _launch(client, web_a, org.slug, "multi-2")
            page = _live_page(client, f"{web_b}/orgs/{org.slug}/instances/{second}/")
            with _socket_on(web_b, page, client) as socket_b:
                # When A is killed outright (SIGKILL: no graceful shutdown), then the workers go on
                portal.web_kill(0)
                portal.workers_resume()
                # Then the launch still runs, and the page on B is pushed so
                receive_until(socket_b, 'data-state="running"', timeout=RUN_WITHIN_S)
            wait_until(lambda: _runs(second), timeout=RUN_WITHIN_S, what="the launch A took to run")

            # And the front proxy sends every request to B now: pages, and a new launch (a POST
            # that nginx passes on because the dead process never received it)
            for _ in range(4):
                assert client.get("/healthz").status_code == 200
            third = _launch(client, portal.url, org.slug, "multi-3")
            wait_until(lambda: _runs(third), timeout=RUN_WITHIN_S, what="a launch made after the kill to run")
            # And no launch was lost or doubled
            names = Instance.objects.filter(organization=org).order_by("name").values_list("name", flat=True)
            assert list(names) == ["multi-1", "multi-2", "multi-3"]
    finally:
        agent.stop()
