"""Shared pieces of the workload tests (no tests here; named so it sits with them).

`WorkloadPortal` stands in for the portal's transport on the workload endpoints (register,
heartbeat and telemetry too, so a whole agent process can talk to it): it serves the desired
state on the long-poll exactly as the protocol says, and records every status report. The
Jupyter side is never doubled: the tests run real JupyterLab servers and kernels.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.sync.client import unix_connect

from provisioning.agent.workloads.notebook import UnixHTTPConnection
from tests.agent.portal_double import portal_double_default_script

STATUS_PATH = "/api/v1/agent/workloads/"


@dataclass
class Report:
    instance_id: str
    body: dict
    at: float  # time.monotonic() when it arrived


@dataclass
class WorkloadPortal:
    url: str = ""
    version: int = 0
    workloads: list = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    polls: list[dict] = field(default_factory=list)  # the query of every long-poll
    status_codes: dict[str, int] = field(default_factory=dict)  # instance id -> answer
    poll_code: int = 200
    other: list[str] = field(default_factory=list)  # paths of register/heartbeat/telemetry
    cond: threading.Condition = field(default_factory=threading.Condition)
    closing: bool = False

    def desire(self, *workloads: dict) -> float:
        """Publish a new desired state (a new version); returns when, for latency figures."""
        with self.cond:
            self.workloads = list(workloads)
            self.version += 1
            self.cond.notify_all()
            return time.monotonic()

    def reports_for(self, instance_id: str) -> list[dict]:
        with self.cond:
            return [r.body for r in self.reports if r.instance_id == instance_id]

    def wait_report(self, instance_id: str, state: str, timeout: float = 60,
                    after: int = 0, where=lambda body: True) -> Report:
        """The first report of `state` for the instance, skipping its first `after` reports."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                mine = [r for r in self.reports if r.instance_id == instance_id][after:]
                for report in mine:
                    if report.body["state"] == state and where(report.body):
                        return report
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {state!r} report for {instance_id} in {timeout}s; "
                                         f"got {[r.body['state'] for r in mine]}: {mine[-3:]}")
                self.cond.wait(remaining)


class _Handler(BaseHTTPRequestHandler):
    portal: WorkloadPortal

    def do_GET(self):  # noqa: N802 - http.server's naming
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path != "/api/v1/agent/workloads":
            return self._answer(404, {"detail": "no such path"})
        query = dict(urllib.parse.parse_qsl(parsed.query))
        portal = self.portal
        with portal.cond:
            portal.polls.append(query)
            if portal.poll_code != 200:
                return self._answer(portal.poll_code, {"detail": "scripted"})
            deadline = time.monotonic() + float(query.get("wait", 25))
            while (portal.version == int(query.get("version", 0)) and not portal.closing
                   and time.monotonic() < deadline):
                portal.cond.wait(deadline - time.monotonic())
            answer = {"version": portal.version, "workloads": portal.workloads}
        self._answer(200, answer)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        portal = self.portal
        if self.path.startswith(STATUS_PATH) and self.path.endswith("/status"):
            instance_id = self.path[len(STATUS_PATH):-len("/status")]
            with portal.cond:
                portal.reports.append(Report(instance_id, body, time.monotonic()))
                portal.cond.notify_all()
                code = portal.status_codes.get(instance_id, 202)
            return self._answer(code, {} if code == 202 else {"detail": "scripted"})
        answers = portal_double_default_script().get(self.path)
        if not answers:
            return self._answer(404, {"detail": "no such path"})
        with portal.cond:
            portal.other.append(self.path)
            status, reply = answers[0]
        self._answer(status, reply)

    def _answer(self, status: int, reply: dict) -> None:
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class WorkloadPortalServer:
    def __init__(self):
        self.portal = WorkloadPortal()
        handler = type("Handler", (_Handler,), {"portal": self.portal})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.portal.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> WorkloadPortal:
        self.thread.start()
        return self.portal

    def __exit__(self, *exc_info) -> None:
        with self.portal.cond:
            self.portal.closing = True
            self.portal.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


def notebook_spec(instance_id: str, state: str = "running", gpus=(), args=()) -> dict:
    return {"id": instance_id, "kind": "notebook", "state": state, "gpus": list(gpus),
            "jupyter_args": list(args)}


# --- talking to a real Jupyter server the way the front proxy does ----------------------------


def _xsrf(running: dict) -> str:
    """Jupyter's XSRF cookie, as a browser gets it from the first page: the server has no token,
    so a request that changes something must carry it (cookie and header), as JupyterLab does.
    Where the page sets none (seen on the GPU image the device checks run on, whose Jupyter
    packages are carried in as wheels), a token of our own: the check is a double submit, cookie
    equal to header, which is what a browser's request proves and a cross-site one cannot."""
    connection = UnixHTTPConnection(running["socket"], timeout=20)
    try:
        connection.request("GET", f"/nb/{running['route_slot']}/lab", headers={"Host": "localhost"})
        response = connection.getresponse()
        response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie" and value.startswith("_xsrf="):
                return value.split(";", 1)[0].removeprefix("_xsrf=")
    finally:
        connection.close()
    return uuid.uuid4().hex


def jupyter_request(running: dict, path: str, *, method: str = "GET",
                    body: dict | None = None) -> tuple[int, dict | list | None]:
    """(status, JSON) of a Jupyter REST call on the socket a "running" report names, with the
    XSRF cookie and header JupyterLab sends."""
    headers = {}
    if method != "GET":
        token = _xsrf(running)
        headers = {"Cookie": f"_xsrf={token}", "X-XSRFToken": token}
    return jupyter_request_bare(running, path, method=method, body=body, headers=headers)


def jupyter_request_bare(running: dict, path: str, *, method: str = "GET", body: dict | None = None,
                         headers: dict | None = None) -> tuple[int, dict | list | None]:
    """The same, with only the headers given."""
    headers = {"Host": "localhost", "Content-Type": "application/json", **(headers or {})}
    connection = UnixHTTPConnection(running["socket"], timeout=20)
    try:
        connection.request(method, f"/nb/{running['route_slot']}/{path}",
                           body=json.dumps(body).encode() if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    if response.status >= 400:
        return response.status, None
    return response.status, json.loads(text) if text else None


def kernel_start(running: dict) -> str:
    # With a path, as JupyterLab sends it: the kernel then runs in that directory of root_dir.
    status, kernel = jupyter_request(running, "api/kernels", method="POST",
                                     body={"name": "python3", "path": ""})
    assert status == 201, status
    return kernel["id"]


def kernel_execute(running: dict, kernel_id: str, code: str, timeout: float = 60) -> str:
    """Run `code` in the kernel over its websocket (messaging protocol 5.3); returns stdout."""
    token = _xsrf(running)
    uri = f"ws://localhost/nb/{running['route_slot']}/api/kernels/{kernel_id}/channels"
    with unix_connect(running["socket"], uri, open_timeout=timeout, max_size=None,
                      additional_headers={"Cookie": f"_xsrf={token}"}) as websocket:
        return kernel_execute_on(websocket, code, timeout)


def kernel_execute_on(websocket, code: str, timeout: float = 60) -> str:
    """Run `code` on a kernel's open channels websocket (messaging protocol 5.3); its stdout."""
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "date": "2026-01-01T00:00:00Z", "msg_type": "execute_request",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }
    output, deadline = [], time.monotonic() + timeout
    websocket.send(json.dumps(request))
    while time.monotonic() < deadline:
        message = json.loads(websocket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        if kind == "stream":
            output.append(message["content"]["text"])
        elif kind == "error":
            raise AssertionError("kernel error: " + "\n".join(message["content"]["traceback"]))
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            return "".join(output)
    raise AssertionError(f"no answer from the kernel within {timeout}s")
