"""Two tenants' notebooks on one node, attacked from inside one of them, through every real piece:
the API launch, a Celery worker, a real agent (as root, so each server gets an account of its
own), JupyterLab and kernels, and nginx in front. Tenant A runs code in its own kernel, reached
the way a browser reaches it (session cookie, nginx, websocket), and tries to reach tenant B.

The attacks are the ones a shared account allowed before: read B's server environment, list or
write B's folders, connect to B's server socket, read B's kernel connection files, signal B's
processes. Each is done for real in A's kernel; A doing the same to its own things is the control
that shows the code would have succeeded where nothing stops it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
from websockets.sync.client import connect

from apps.catalog.models import Image
from apps.instances.models import Instance
from provisioning.agent.workloads.process import proc_with_arg
from tests.agent.test_workloads_support import kernel_execute_on
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.instances.test_notebook_integration import logged_in_client, notebook_node  # noqa: F401
from tests.support.isolation import PROBE_NAMES, probes_code
from tests.support.processes import PROXY_SECRET
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="per-notebook accounts need the agent to be root"),
]

def launched(client, org, name: str) -> Instance:
    response = client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        json={"flavor": "notebooks/notebook-1x-h100", "image": Image.objects.get(slug="jupyterlab-4-host").slug,
              "region": "us-east-1", "name": name},
    )
    assert response.status_code == 201, response.text
    instance_id = response.json()["id"]
    wait_until(lambda: Instance.objects.get(pk=instance_id).state in ("running", "failed"), 90, f"{name} to run")
    instance = Instance.objects.select_related("runtime").get(pk=instance_id)
    assert instance.state == "running", instance.state_reason
    return instance


def facts(instance: Instance, workload_root: Path) -> dict:
    """Where the agent put this instance's server, read as root from outside."""
    socket_path = instance.runtime.socket
    [pid] = proc_with_arg(f"--ServerApp.sock={socket_path}")
    return {
        "pid": pid,
        "uid": os.stat(f"/proc/{pid}").st_uid,
        "socket": socket_path,
        "runtime": str(Path(socket_path).parent / "rt"),
        "work": str(workload_root / str(instance.pk) / "work"),
        "home": str(workload_root / "slots" / instance.runtime.route_slot / "home"),
    }


def run_in_kernel(live_portal, client, instance: Instance, code: str) -> str:
    """Start a kernel and run `code` through the front proxy, as JupyterLab in a browser does."""
    base = f"/nb/{instance.runtime.route_slot}/"
    client.get(f"{base}lab")  # sets Jupyter's _xsrf cookie, as the first page load does
    xsrf = client.cookies["_xsrf"]
    kernel = client.post(f"{base}api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
    assert kernel.status_code == 201, kernel.text
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)
    url = live_portal.ws_url(f"{base}api/kernels/{kernel.json()['id']}/channels")
    with connect(url, additional_headers={"Cookie": cookies}, open_timeout=60, max_size=None) as websocket:
        return kernel_execute_on(websocket, code)


def test_a_tenants_kernel_cannot_reach_another_tenants_notebook_on_the_same_node(live_portal, notebook_node):  # noqa: F811
    # Given two tenants, each with a notebook running on the same node (one pooled, one cold)
    owner_a, owner_b = UserFactory(), UserFactory()
    org_a, org_b = OrganizationFactory(owner=owner_a), OrganizationFactory(owner=owner_b)
    client_a = logged_in_client(live_portal.url, owner_a.email)
    client_b = logged_in_client(live_portal.url, owner_b.email)
    notebook_a, notebook_b = launched(client_a, org_a, "tenant-a"), launched(client_b, org_b, "tenant-b")
    assert notebook_a.node_id == notebook_b.node_id
    workload_root = Path(notebook_node.leaves_behind)
    a, b = facts(notebook_a, workload_root), facts(notebook_b, workload_root)
    assert a["uid"] != b["uid"] and 0 not in (a["uid"], b["uid"])

    # and B is using its notebook: a kernel of B's runs
    assert run_in_kernel(live_portal, client_b, notebook_b, "print(6 * 7)").strip() == "42"

    # When A's kernel tries to reach B's server, files, sockets and processes
    attack = json.loads(run_in_kernel(live_portal, client_a, notebook_a, probes_code(b)))
    # and, as the control, the same probes on A's own things
    control = json.loads(run_in_kernel(live_portal, client_a, notebook_a, probes_code(a)))

    # Then every attack is refused by the kernel of the host
    assert attack["uid"] == a["uid"]
    assert {name: attack[name] for name in PROBE_NAMES} == dict.fromkeys(PROBE_NAMES, "PermissionError")
    # and B's server and kernel channels are not on TCP: the kernel's connection file says IPC, and
    # B's only TCP listener is its kernel's IOPub pipe (ipykernel binds it to 127.0.0.1 for output
    # of forked children; it only receives, and drops any message without its 128-bit secret)
    [connection_file] = Path(b["runtime"]).glob("kernel-*.json")
    assert json.loads(connection_file.read_text())["transport"] == "ipc"
    assert attack["tcp_listeners"] == 1
    assert not (Path(b["work"]) / "planted-by-a.txt").exists()
    # while the same code on A's own things succeeds (the probes work where nothing stops them)
    assert {name: control[name] for name in PROBE_NAMES} == dict.fromkeys(PROBE_NAMES, "ok")
    # And A's notebook works through the proxy; B's owner still reaches B's, A does not
    assert client_a.get(f"/nb/{notebook_a.runtime.route_slot}/api/contents/planted-by-a.txt").status_code == 200
    assert client_b.get(f"/nb/{notebook_b.runtime.route_slot}/api/status").status_code == 200
    assert client_a.get(f"/nb/{notebook_b.runtime.route_slot}/api/status").status_code == 403


def test_the_jupyterlab_page_and_its_scripts_carry_no_secret(live_portal, notebook_node):  # noqa: F811
    # Given a running notebook, opened by its owner through the front proxy
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    client = logged_in_client(live_portal.url, owner.email)
    notebook = launched(client, org, "page-check")
    page_url = f"{live_portal.url}/nb/{notebook.runtime.route_slot}/lab"

    # When the browser loads the page and every script it names
    page = client.get(page_url)
    assert page.status_code == 200
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page.text, re.S).group(1))
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.text)
    assert scripts, "JupyterLab's page loads its bundle"
    bodies = [page.text]
    for src in scripts:
        response = client.get(urljoin(page_url, src))
        assert response.status_code == 200, src
        bodies.append(response.text)

    # Then the server has no token to give, and no secret of the portal's, the proxy's or the
    # server's (its cookie secret) is in anything the browser received
    assert config["token"] == ""
    socket_dir = Path(notebook.runtime.socket).parent
    cookie_secret = (socket_dir / "rt" / "jupyter_cookie_secret").read_text().strip()
    secrets = {"proxy secret": PROXY_SECRET, "session": client.cookies["sessionid"], "cookie secret": cookie_secret}
    for name, secret in secrets.items():
        assert secret and not any(secret in body for body in bodies), name
    assert notebook.runtime.socket not in page.text  # nor where the server listens
