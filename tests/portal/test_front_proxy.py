"""The front proxy's notebook route, through a real nginx: what reaches a notebook server.

The portal side is a tiny HTTP server that answers nginx's auth_request the way
`apps.instances.views.proxy_auth` does (200 and the socket's path); the notebook side is a Unix
socket server that echoes the headers it got. Both are real sockets; nginx is the real binary
with the configuration `front_proxy_start` writes.
"""

from __future__ import annotations

import grp
import json
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from devtools.proxy import PROXY_ACCOUNT, front_proxy_start
from tests.support.processes import free_port

SECRET = "proxy-secret-for-this-test"


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"cookie": self.headers.get("Cookie"),
                           "authorization": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:  # a Unix socket has no client address
        return "unix"

    def log_message(self, *args):
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _portal_double(socket_path: str) -> ThreadingHTTPServer:
    class Auth(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            allowed = self.path == "/internal/notebook-auth" and self.headers.get("X-Proxy-Secret") == SECRET
            self.send_response(200 if allowed or self.path == "/healthz" else 403)
            if allowed:
                self.send_header("X-Notebook-Socket", socket_path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Auth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxied_echo(tmp_path):
    # The notebook's socket, as the agent lays it out: only the proxy's group may reach it.
    folder = tmp_path / "sock"
    folder.mkdir()
    socket_path = str(folder / "jupyter.sock")
    echo = _UnixServer(socket_path, _Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    portal = _portal_double(socket_path)
    proxy = front_proxy_start(root=tmp_path / "nginx", listen=f"127.0.0.1:{free_port()}",
                              portal=f"127.0.0.1:{portal.server_address[1]}", secret=SECRET)
    if os.geteuid() == 0:
        proxy_gid = grp.getgrnam(PROXY_ACCOUNT).gr_gid
        for path, mode in ((folder, 0o2710), (Path(socket_path), 0o660)):
            os.chown(path, 0, proxy_gid)
            path.chmod(mode)
        tmp_path.chmod(0o711)
    try:
        yield proxy.url
    finally:
        proxy.stop()
        portal.shutdown()
        echo.shutdown()


def test_the_notebook_never_gets_the_portal_session_nor_a_browser_authorization(proxied_echo):
    # Given a browser with the portal's session cookie, Jupyter's XSRF cookie and another one
    cookies = "csrftoken=c1; sessionid=the-portal-session; _xsrf=x1; sessionid=a-second-copy; theme=dark"
    # When it opens a notebook path through the front proxy
    response = httpx.get(f"{proxied_echo}/nb/slot-1/api/status",
                         headers={"Cookie": cookies, "Authorization": "token guessed"})
    # Then the notebook server sees every cookie but the portal's session, and no Authorization
    assert response.status_code == 200, response.text
    seen = response.json()
    assert "session" not in seen["cookie"]
    assert {part.strip() for part in seen["cookie"].split(";") if part.strip()} == {
        "csrftoken=c1", "_xsrf=x1", "theme=dark"}
    assert not seen["authorization"]


def test_a_browser_without_cookies_reaches_the_notebook_with_none(proxied_echo):
    response = httpx.get(f"{proxied_echo}/nb/slot-1/lab")
    assert response.status_code == 200 and not response.json()["cookie"]


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx drops to its worker account only when started as root")
def test_nginx_workers_run_as_the_proxy_account(proxied_echo, tmp_path):
    pid = int((tmp_path / "nginx" / "nginx.pid").read_text())
    workers = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert workers and {Path(f"/proc/{w}").stat().st_uid for w in workers} == {
        __import__("pwd").getpwnam(PROXY_ACCOUNT).pw_uid}
