"""A tiny local HTTP server standing in for the portal's transport in agent tests.

It records every request and answers from a script per path; it is a test double for the wire
only (the real portal side is tested against the same protocol in the portal's own tests).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class RecordedRequest:
    path: str
    headers: dict
    body: dict


@dataclass
class PortalDouble:
    # path -> list of (status, body) answered in order; the last one repeats.
    script: dict[str, list[tuple[int, dict]]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]


def portal_double_default_script() -> dict[str, list[tuple[int, dict]]]:
    return {
        "/api/v1/agent/register": [
            (201, {"node_id": "6f1c2b1e-0000-4000-8000-000000000001", "credential": "s3cret",
                   "heartbeat_interval_s": 10})
        ],
        "/api/v1/agent/heartbeat": [(200, {"heartbeat_interval_s": 10})],
        "/api/v1/agent/telemetry": [(202, {})],
    }


class _Handler(BaseHTTPRequestHandler):
    portal: PortalDouble

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.portal.requests.append(RecordedRequest(self.path, dict(self.headers), body))
        answers = self.portal.script.get(self.path) or [(404, {"detail": "no such path"})]
        status, reply = answers.pop(0) if len(answers) > 1 else answers[0]
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def portal_double_running(
    script: dict[str, list[tuple[int, dict]]] | None = None,
) -> Iterator[PortalDouble]:
    """`with portal_double_running(script) as portal: ... portal.url ... portal.requests`."""
    portal = PortalDouble(script=script or portal_double_default_script())
    handler = type("Handler", (_Handler,), {"portal": portal})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    portal.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield portal
    finally:
        server.shutdown()
        server.server_close()
