"""The front proxy: nginx in front of the portal and of every notebook.

Browser traffic for `/nb/<route slot>/…` is authorised by the portal before nginx passes it on:
nginx's auth_request asks `/internal/notebook-auth`, which answers 401/403/404, or 200 with the
path of the notebook server's Unix socket in a response header. So the routing table is the
portal's database (a stopped notebook simply has no route), and nginx needs no reload per launch.

The notebook server has no token: it trusts whoever can connect to its socket, and only its own
account and the proxy's group can (see provisioning/agent/workloads/slot.py). So nothing secret
reaches the browser, and the portal's session cookie is taken out of what nginx forwards: a
workload (the user's own code) must never see the session of whoever opens it, an admin say.
When run as root, nginx's workers run as the `neocloud-proxy` account, in the group of that name,
which is the one group workload sockets admit. Everything else goes to the portal's ASGI server,
or to one of several (see `upstream_block`).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from provisioning.agent.workloads.traversal import ancestors_release, ancestors_traversable

CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user_line}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp/body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  # Authorisation answers are kept for {auth_cache_s} s per browser session and notebook, so that
  # the hundred requests of a JupyterLab page load cost one portal round trip, not a hundred.
  proxy_cache_path {root}/authcache levels=1 keys_zone=nbauth:4m max_size=64m inactive=1m;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  # The Cookie header less the portal's session cookie (twice: a browser may send two).
  map $http_cookie $nb_cookie_once {{
    "~^(?<before>.*?)(^|;\\s*){session_cookie}=[^;]*(?<after>.*)$" "$before$after";
    default $http_cookie;
  }}
  map $nb_cookie_once $nb_cookie {{
    "~^(?<before>.*?)(^|;\\s*){session_cookie}=[^;]*(?<after>.*)$" "$before$after";
    default $nb_cookie_once;
  }}
  {upstream}
  server {{
    listen {listen};
    client_max_body_size 100m;
    proxy_http_version 1.1;
    # proxy_set_header is inherited only by blocks that set none of their own, so every
    # location below repeats the forwarding headers it needs.

    location / {{
      proxy_pass http://portal;
      {forwarded}
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
    }}

    location ~ "^/nb/(?<nb_slot>[A-Za-z0-9-]{{1,64}})/" {{
      auth_request /_notebook_auth;
      auth_request_set $nb_socket $upstream_http_x_notebook_socket;
      auth_request_set $nb_missing $upstream_http_x_notebook_missing;
      error_page 401 = @login;
      error_page 403 = @denied;
      proxy_pass http://unix:$nb_socket:;
      {forwarded}
      proxy_set_header Authorization "";
      proxy_set_header Cookie $nb_cookie;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1d;
      proxy_buffering off;
    }}

    location = /_notebook_auth {{
      internal;
      proxy_pass http://portal/internal/notebook-auth;
      {forwarded}
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Proxy-Secret "{secret}";
      proxy_cache nbauth;
      proxy_cache_key "$nb_slot:$cookie_{session_cookie}";
      proxy_cache_valid 200 403 {auth_cache_s}s;
      proxy_ignore_headers Set-Cookie Cache-Control Expires Vary;
    }}

    location @login {{
      return 302 /accounts/login/?next=$request_uri;
    }}

    # auth_request can only answer 2xx, 401 or 403; the portal marks "no such notebook" on its
    # 403 so that the browser gets an honest 404.
    location @denied {{
      default_type text/plain;
      if ($nb_missing) {{
        return 404 "No notebook is running at this address. It may have been stopped.\n";
      }}
      return 403 "This notebook belongs to someone else.\n";
    }}
  }}
}}
"""


class ProxyError(RuntimeError):
    pass


@dataclass
class FrontProxy:
    process: subprocess.Popen
    url: str
    root: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        ancestors_release(holder=self.root)


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise ProxyError("nginx is not installed (Debian: apt-get install nginx); `make run` installs it as root")
    return found


PROXY_ACCOUNT = "neocloud-proxy"  # also the group workload sockets admit (agent: --proxy-group)


# A web process that refuses a connection is left out for this long, then tried again.
FAIL_TIMEOUT_S = 10


def upstream_block(portals: list[str]) -> str:
    """The `portal` upstream: one server as it always was, or several web processes.

    With several, a connection that fails (a process that died or restarts) marks that server
    down for FAIL_TIMEOUT_S and the request goes to the next one: nginx's default
    `proxy_next_upstream error timeout`, which passes on any request not yet sent, a POST
    included. A POST already sent to a process that then dies is not retried (nginx never
    replays a non-idempotent request): its client gets a 502 and finds in its instance list
    whether the launch was made. Nothing is half-made: a launch is one transaction that either
    committed or did not, and a committed one whose task never reached the queue is enqueued
    again by the reconciler (PORTAL_REQUEUE_AFTER_S). `least_conn` balances open connections,
    which long-lived websockets mostly are.
    """
    if len(portals) == 1:
        return f"upstream portal {{ server {portals[0]}; keepalive 32; }}"
    servers = "".join(f"    server {portal} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;\n" for portal in portals)
    return "upstream portal {\n    least_conn;\n" + servers + "    keepalive 32;\n  }"


def front_proxy_start(*, root: Path, listen: str, portal: str | list[str], secret: str, auth_cache_s: int = 2,
                      session_cookie: str = "sessionid") -> FrontProxy:
    """Start nginx listening on `listen` (host:port) in front of the portal at `portal` (host:port),
    or in front of several portal web processes (a list of host:port) sharing one database."""
    portals = [portal] if isinstance(portal, str) else list(portal)
    if not portals:
        raise ProxyError("the front proxy needs at least one portal web process")
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "authcache"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    user_line = ""
    if os.geteuid() == 0:
        # nginx's workers drop to an unprivileged user when started as root; it must own its files.
        worker = proxy_account_ensure()
        user_line = f"user {PROXY_ACCOUNT} {PROXY_ACCOUNT};"
        for path in [root, *root.rglob("*")]:
            os.chown(path, worker.pw_uid, worker.pw_gid)
        # The workers must reach their files: the search bit on the folders above, held in the
        # host's ledger like a node agent's, so neither takes it away while the other needs it.
        ancestors_traversable(root / "nginx.conf", holder=root)
    config = root / "nginx.conf"
    forwarded = (
        "proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $remote_addr; "
        "proxy_set_header X-Forwarded-Proto $scheme;"
    )
    config.write_text(
        CONFIG.format(
            root=root,
            listen=listen,
            upstream=upstream_block(portals),
            secret=secret,
            forwarded=forwarded,
            user_line=user_line,
            auth_cache_s=auth_cache_s,
            session_cookie=session_cookie,
        )
    )
    process = subprocess.Popen(
        [binary, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://{listen}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = (process.stderr.read() or b"").decode(errors="replace").strip().splitlines()[-1:]
            raise ProxyError(f"nginx did not start: {detail}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return FrontProxy(process=process, url=url, root=root)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise ProxyError("nginx did not answer within 10 s")



def proxy_account_ensure() -> pwd.struct_passwd:
    """The proxy workers' own account, in the group of the same name (created when missing).

    Its own, not `nobody`: workload sockets admit this group, so no other program may share it.
    The agent on this host creates the group too when it starts first; either order works.
    """
    for argv, exists in ((["groupadd", "--system", PROXY_ACCOUNT], 9),
                         (["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           "--gid", PROXY_ACCOUNT, PROXY_ACCOUNT], 9)):
        try:
            (grp.getgrnam if argv[0] == "groupadd" else pwd.getpwnam)(PROXY_ACCOUNT)
            continue
        except KeyError:
            pass
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode not in (0, exists):
            raise ProxyError(f"cannot create the proxy account: {done.stderr.strip()}")
    return pwd.getpwnam(PROXY_ACCOUNT)
