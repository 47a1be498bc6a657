"""The agent's side of the portal protocol (standard library only: urllib).

All bodies are JSON (`Content-Type: application/json`), times are ISO-8601 in UTC.

1. Register, once per host, with a one-time registration token an operator created:

       POST {portal}/api/v1/agent/register
       {"token": "<registration token>", "inventory": <NodeInventory payload>}
       -> 201 {"node_id": "<uuid>", "credential": "<secret>", "heartbeat_interval_s": 10}

   The agent stores node_id + credential in its state file (mode 0600), so a restarted agent
   resumes without a new token. Every later call sends
       Authorization: Node <node_id>:<credential>

2. Heartbeat, every `heartbeat_interval_s` (the portal may change it in any reply):

       POST {portal}/api/v1/agent/heartbeat
       {"seq": <int>, "sent_at": "<iso>", "inventory": <NodeInventory payload> | null,
        "telemetry": <NodeTelemetry payload>}          (optional: when telemetry is due)
       -> 200 {"heartbeat_interval_s": <int>, "gpus_updated": <int>}

   `inventory` is null when unchanged since the last one the portal accepted (register or a 2xx
   heartbeat); a restarted agent sends it on its first heartbeat. The heartbeat says the node is
   alive; it carries no desired state (that has one channel: 4). `telemetry` rides on the
   heartbeat when it is due then (protocol.F_TELEMETRY): one request per interval instead of two.
   `gpus_updated` is answered only to a heartbeat that carried telemetry; a portal that does not
   answer it ignored the telemetry (an older portal), and the agent then sends it apart (3).

3. Telemetry, every `--telemetry-interval` seconds, when it did not ride on a heartbeat:

       POST {portal}/api/v1/agent/telemetry
       {"seq": <int>, "telemetry": <NodeTelemetry payload>}
       -> 202

4. Desired workloads, long-polled by a background thread; the only channel they come on:

       GET {portal}/api/v1/agent/workloads?version=<last version seen, 0 at start>&wait=25
       -> 200 {"version": <int>, "workloads": [<workload spec>, ...]}

   The portal answers at once when its version differs from the one sent, else after up to
   `wait` seconds with the same version. The version changes exactly when the list changes (not
   when this agent's own reports move an instance along, say from provisioning to running), so
   an answer with a new version always carries something to do. Each answer is the full list
   for this node; a workload that is no longer listed is stopped (its working directory is
   kept). A workload spec:

       {"id": "<instance uuid>", "kind": "notebook", "state": "running" | "stopped" | "deleted",
        "gpus": ["GPU-<uuid>" | "MIG-<uuid>", ...], "jupyter_args": ["--Class.option=value", ...]}

   Unknown kinds are ignored (logged). "deleted" stops the workload and removes its working
   directory. jupyter_args may not set what the agent owns (ip, port, sock, base_url, root_dir,
   token, password, allow_origin, xsrf, kernelspecs, kernel transport, config files): such a spec
   is reported failed.
   5xx, timeouts and connection errors: retried with backoff; 401/403: the agent exits; 404 (a
   portal without the endpoint): retried after a long pause. The spec and the report body's
   fields are defined once, in provisioning/protocol.py, for the portal and the agent.

5. Workload status, on every transition of a workload and every telemetry interval while it runs:

       POST {portal}/api/v1/agent/workloads/<instance id>/status
       {"seq": <int>, "state": "starting" | "running" | "stopped" | "failed",
        "reason": <str, ≤ 1000 chars> | null, "route_slot": <str> | null,
        "socket": <str> | null, "pooled": <bool>, "started_at": "<iso>" | null,
        "activity": {"last_activity": "<iso>" | null, "kernels": <int>, "busy_kernels": <int>,
                     "connections": <int>} | null}
       -> 202; 409 when stale (ignored); 404 when the portal does not know the instance (the
          agent stops its server and reports nothing more about it in this run)

   "running" carries route_slot/socket: the notebook is served at /nb/<route_slot>/ on the Unix
   socket <socket> of this host, which only the server's own account and the front proxy's group
   may connect to; the server has no token (the socket's permissions are its authentication).
   "failed" carries a reason (with the last lines of Jupyter's output). "starting" carries only
   route_slot. `started_at` is when Jupyter first answered, or for a warm-pool server (`pooled`)
   the moment it was handed to this instance: metering starts there.

`seq` is one counter per agent run shared by all of the above, starting at the agent's
start time in milliseconds since the epoch and going up by one per message, so a restarted
agent's messages are always newer than the previous run's: the portal ignores a message whose
seq is not above the last it saw for that node and kind (for workload status: that instance).

Errors: a 4xx is a bug on our side or a bad credential, never retried; the portal's JSON
`{"detail": "..."}` (or the raw body) is logged. 401/403 on heartbeat or telemetry means the
node's credential is no longer valid (likewise on the long-poll and workload status): the agent
exits, and re-registering needs a new token.
5xx, timeouts and connection errors are transient: retried with capped exponential backoff and
full jitter.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioning.protocol import F_GPUS_UPDATED, F_TELEMETRY

log = logging.getLogger("neocloud.agent")

DEFAULT_STATE_FILE = Path("~/.neocloud-agent/state.json")
DEFAULT_HEARTBEAT_INTERVAL_S = 10


class PortalRejected(Exception):
    """A 4xx: retrying the same request will not help."""

    def __init__(self, path: str, status: int, detail: str):
        super().__init__(f"portal rejected {path}: HTTP {status}: {detail}")
        self.path = path
        self.status = status
        self.detail = detail


class CredentialRejected(PortalRejected):
    """401/403: this node's credential (or the registration token) is not accepted."""


class PortalUnavailable(Exception):
    """5xx, timeout or connection failure, still failing after the retries."""


class AgentStopping(Exception):
    """The agent was asked to stop while waiting to retry."""


@dataclass
class AgentState:
    portal_url: str
    hostname: str
    node_id: str
    credential: str


@dataclass
class Registration:
    node_id: str
    credential: str
    heartbeat_interval_s: int


@dataclass
class HeartbeatReply:
    heartbeat_interval_s: int
    # Whether the portal took the telemetry the heartbeat carried (False: none carried, or an
    # older portal that ignores it).
    telemetry_taken: bool = False


@dataclass
class WorkloadsAnswer:
    version: int
    workloads: list


# What the portal made of a workload status report.
STATUS_ACCEPTED, STATUS_STALE, STATUS_UNKNOWN = "accepted", "stale", "unknown"


@dataclass
class RetryPolicy:
    attempts: int = 6  # 1 + 5 retries: about a minute of trying with the defaults
    base_s: float = 1.0
    cap_s: float = 30.0

    def delay_s(self, retry_number: int) -> float:
        # Full jitter: many agents restarting with the portal do not retry in lock-step.
        return random.uniform(0, min(self.cap_s, self.base_s * 2**retry_number))


class PortalClient:
    def __init__(
        self,
        portal_url: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        status_retry: RetryPolicy | None = None,
    ):
        self.portal_url = portal_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        # A workload status report is repeated at the next telemetry tick anyway: give up sooner,
        # so a portal outage does not hold up stopping a workload for a minute.
        self.status_retry = status_retry or RetryPolicy(attempts=3, base_s=0.5, cap_s=4.0)
        self.stop = stop or threading.Event()
        self.node_id: str | None = None
        self.credential: str | None = None

    def authenticate(self, node_id: str, credential: str) -> None:
        self.node_id, self.credential = node_id, credential

    def register(self, token: str, inventory: dict) -> Registration:
        reply = self._post("/api/v1/agent/register", {"token": token, "inventory": inventory},
                           authenticated=False)
        try:
            return Registration(
                node_id=str(reply["node_id"]),
                credential=str(reply["credential"]),
                heartbeat_interval_s=int(
                    reply.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_INTERVAL_S)
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PortalRejected("/api/v1/agent/register", 201,
                                 f"reply lacks node_id/credential: {exc}") from exc

    def heartbeat(self, seq: int, sent_at: str, inventory: dict | None,
                  telemetry: dict | None = None) -> HeartbeatReply:
        body = {"seq": seq, "sent_at": sent_at, "inventory": inventory}
        if telemetry is not None:
            body[F_TELEMETRY] = telemetry
        reply = self._post("/api/v1/agent/heartbeat", body)
        return HeartbeatReply(
            heartbeat_interval_s=int(
                reply.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_INTERVAL_S)
            ),
            telemetry_taken=telemetry is not None and F_GPUS_UPDATED in reply,
        )

    def telemetry(self, seq: int, telemetry: dict) -> None:
        self._post("/api/v1/agent/telemetry", {"seq": seq, "telemetry": telemetry})

    def workloads_poll(self, version: int, wait_s: float) -> WorkloadsAnswer:
        """One long-poll, no retries here: the watch thread owns the backoff."""
        path = f"/api/v1/agent/workloads?version={int(version)}&wait={wait_s:g}"
        try:
            reply = self._request_once("GET", path, None, self._headers(True),
                                       timeout_s=wait_s + self.timeout_s)
        except _Transient as exc:
            raise PortalUnavailable(f"portal {path}: {exc}") from exc
        try:
            return WorkloadsAnswer(version=int(reply["version"]),
                                   workloads=list(reply.get("workloads") or []))
        except (KeyError, TypeError, ValueError) as exc:
            raise PortalRejected(path, 200, f"reply lacks version/workloads: {exc}") from exc

    def workload_status(self, instance_id: str, body: dict) -> str:
        """STATUS_ACCEPTED, STATUS_STALE (409) or STATUS_UNKNOWN (404: stop the workload)."""
        path = f"/api/v1/agent/workloads/{instance_id}/status"
        try:
            self._post(path, body, retry=self.status_retry)
        except CredentialRejected:
            raise
        except PortalRejected as exc:
            if exc.status == 409:
                return STATUS_STALE
            if exc.status == 404:
                return STATUS_UNKNOWN
            raise
        return STATUS_ACCEPTED

    # --- transport ------------------------------------------------------------------------------

    def _headers(self, authenticated: bool) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "neocloud-agent/1"}
        if authenticated:
            if not self.node_id or not self.credential:
                raise RuntimeError("not registered: no node credential to authenticate with")
            headers["Authorization"] = f"Node {self.node_id}:{self.credential}"
        return headers

    def _post(self, path: str, body: dict, *, authenticated: bool = True,
              retry: RetryPolicy | None = None) -> dict:
        headers = self._headers(authenticated)
        retry = retry or self.retry
        data = json.dumps(body).encode()
        for attempt in range(retry.attempts):
            if attempt:
                delay = retry.delay_s(attempt - 1)
                if self.stop.wait(delay):
                    raise AgentStopping()
            try:
                return self._request_once("POST", path, data, headers)
            except _Transient as exc:
                log.warning("portal %s: %s (try %d of %d)", path, exc, attempt + 1,
                            retry.attempts)
        raise PortalUnavailable(f"portal {path} still unavailable after "
                                f"{retry.attempts} tries")

    def _request_once(self, method: str, path: str, data: bytes | None, headers: dict,
                      timeout_s: float | None = None) -> dict:
        request = urllib.request.Request(self.portal_url + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                return _json_or_empty(response.read())
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read())
            if exc.code >= 500:
                raise _Transient(f"HTTP {exc.code}: {detail}") from exc
            if exc.code in (401, 403):
                raise CredentialRejected(path, exc.code, detail) from exc
            raise PortalRejected(path, exc.code, detail) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError,
                http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"cannot reach {self.portal_url}: {reason}") from exc


class _Transient(Exception):
    pass


def _json_or_empty(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        reply = json.loads(body)
    except ValueError:
        return {}
    return reply if isinstance(reply, dict) else {}


def _error_detail(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    try:
        reply = json.loads(text)
    except ValueError:
        return text[:300] or "(empty body)"
    if isinstance(reply, dict) and "detail" in reply:
        return str(reply["detail"])[:300]
    return text[:300]


# --- state file --------------------------------------------------------------------------------


def state_load(path: Path) -> AgentState | None:
    """The saved registration, or None when this host has not registered yet."""
    path = path.expanduser()
    if not path.exists():
        return None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("state file %s is readable by others (mode %o): it holds a credential; "
                    "fixing it to 0600", path, mode)
        os.chmod(path, 0o600)
    data = json.loads(path.read_text())
    return AgentState(**{key: data[key] for key in AgentState.__dataclass_fields__})


def state_save(path: Path, state: AgentState) -> None:
    """Write atomically with mode 0600 from the first byte (it holds the node's credential)."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".state-", dir=path.parent)  # 0600
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(asdict(state), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
