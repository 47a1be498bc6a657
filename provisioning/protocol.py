"""The workload protocol between the portal and its node agents, in one place for both sides.

Plain Python, no Django: the agent (provisioning/agent) imports it as it is, and so do the
portal's agent API (apps/instances/api/agent.py), the reports it applies
(apps/instances/services/reports.py) and the drivers (provisioning/drivers). A word of the wire
format spelled anywhere else is a copy that can drift.

Two messages (provisioning/agent/client.py documents the HTTP around them):

- Desired state, portal -> agent, ONE channel: `GET /api/v1/agent/workloads?version=<v>` answers
  `{"version": <int>, "workloads": [<spec>, ...]}`, the full list for the node. The version
  changes exactly when that list changes (it is a counter the portal bumps in the transaction that
  changes it), so an answer with a new version always carries something to do.
- Workload status, agent -> portal: `POST /api/v1/agent/workloads/<id>/status` with a report body
  (`REPORT_FIELDS`), on every change of the workload's process and periodically while it runs.

Adding a workload kind adds a `KIND_*`, its spec class in `SPEC_TYPES`, a driver that builds it
(provisioning/drivers) and an agent runner that runs it (provisioning/agent/workloads).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

# --- kinds ---------------------------------------------------------------------------------------

KIND_NOTEBOOK = "notebook"
# A GPU instance reached over SSH (the catalog's `gpu_slice` offerings; a driver maps offering
# kinds to protocol kinds by this value, as it does for notebooks).
KIND_GPU_SLICE = "gpu_slice"
# A whole node reached over SSH (the catalog's `bare_metal` offerings): every GPU of the node, a
# health check right before hand-over, and the tenant's data wiped when it ends (no persistent home).
KIND_BARE_METAL = "bare_metal"

# --- desired states (what the portal wants of a workload) ---------------------------------------

DESIRED_RUNNING, DESIRED_STOPPED, DESIRED_DELETED = "running", "stopped", "deleted"
DESIRED_STATES: tuple[str, ...] = (DESIRED_RUNNING, DESIRED_STOPPED, DESIRED_DELETED)

# --- reported states (what the agent saw its workload do) ---------------------------------------

STARTING, RUNNING, STOPPED, FAILED = "starting", "running", "stopped", "failed"
REPORTED_STATES: tuple[str, ...] = (STARTING, RUNNING, STOPPED, FAILED)

# Which report may follow which, for one workload within one agent run (None: nothing reported
# yet). RUNNING -> RUNNING is the periodic activity report; a repeat of any state is a report
# that did not get through being sent again. A workload that failed or stopped may start again
# when the user starts the instance again. The supervisor checks its own reports against this.
REPORT_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({STARTING, RUNNING, STOPPED, FAILED}),  # RUNNING: pooled or re-adopted
    STARTING: frozenset({STARTING, RUNNING, STOPPED, FAILED}),
    RUNNING: frozenset({RUNNING, STOPPED, FAILED}),
    STOPPED: frozenset({STOPPED, STARTING, RUNNING}),
    FAILED: frozenset({FAILED, STARTING, RUNNING, STOPPED}),
}


def report_transition_allowed(previous: str | None, state: str) -> bool:
    return state in REPORT_TRANSITIONS.get(previous, frozenset())


# --- the report body -----------------------------------------------------------------------------

F_SEQ, F_STATE, F_REASON = "seq", "state", "reason"
F_ROUTE_SLOT, F_SOCKET, F_POOLED, F_STARTED_AT, F_ACTIVITY = (
    "route_slot", "socket", "pooled", "started_at", "activity")
REPORT_FIELDS: tuple[str, ...] = (
    F_SEQ, F_STATE, F_REASON, F_ROUTE_SLOT, F_SOCKET, F_POOLED, F_STARTED_AT, F_ACTIVITY)
ACTIVITY_FIELDS: tuple[str, ...] = ("last_activity", "kernels", "busy_kernels", "connections")

REASON_LIMIT = 1000  # characters of a failure reason (the end of the server's output)
ROUTE_SLOT_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
# An absolute path of plain characters ending in the server's socket name: the front proxy
# connects to it, so a report must not be able to aim the proxy at another socket on its host.
SOCKET_PATTERN = r"^(/[A-Za-z0-9_.-]+)+/jupyter\.sock$"
SOCKET_MAX_LENGTH = 107  # sun_path


# Where an SSH workload (KIND_GPU_SLICE) is reached: only in a "running" report of one, so a
# notebook's report is exactly REPORT_FIELDS. `host` is the node's --address, `port` one of its
# --ssh-ports, `user` the instance's own account (the portal shows `ssh -p PORT USER@HOST`), and
# `host_key` the public host key its sshd was given ("ssh-ed25519 AAAA..."), so the portal can
# offer a known_hosts line and users need not trust the first connection blindly.
F_HOST, F_PORT, F_USER, F_HOST_KEY = "host", "port", "user", "host_key"
SSH_ENDPOINT_FIELDS: tuple[str, ...] = (F_HOST, F_PORT, F_USER, F_HOST_KEY)
HOST_KEY_PATTERN = r"^ssh-ed25519 [A-Za-z0-9+/]{68}$"  # what the agent makes: no comment
# An account name as useradd takes it (the agent's are nc-<12 hex>): nothing a shell or an
# ssh command line could read as an option or a second word.
SSH_USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


def ssh_endpoint_check(host: object, port: object, user: object,
                       host_key: object) -> tuple[str, int, str, str]:
    """An SSH endpoint as reported; ValueError saying what is wrong."""
    try:
        address = str(ipaddress.ip_address(host)) if isinstance(host, str) else None
    except ValueError:
        address = None
    if address is None:
        raise ValueError(f"SSH host must be an IP address, not {host!r}")
    if type(port) is not int or not (SSH_PORT_MIN <= port <= SSH_PORT_MAX):  # noqa: E721
        raise ValueError(f"SSH port must be a whole number {SSH_PORT_MIN}-{SSH_PORT_MAX}, "
                         f"not {port!r}")
    if not (isinstance(user, str) and re.match(SSH_USER_PATTERN, user)):
        raise ValueError(f"SSH user must be an account name, not {user!r}")
    if not (isinstance(host_key, str) and re.match(HOST_KEY_PATTERN, host_key)):
        raise ValueError(f"SSH host key must be one ssh-ed25519 public key, not {host_key!r}")
    return address, port, user, host_key


# Only in a bare-metal workload's reports (KIND_BARE_METAL), so other kinds' bodies are unchanged:
# `health_check` (F_HEALTH_CHECK, the node fact's payload) in the "failed" report of a start whose
# hand-over health check failed, and `wiped` in a "stopped" or "failed" report once the tenant's
# data is gone: {"account": the removed account or null, "home": the removed home folder,
# "files": how many files were removed}.
F_WIPED = "wiped"
WIPE_FIELDS: tuple[str, ...] = ("account", "home", "files")


def wipe_check(wiped: object) -> dict:
    """A `wiped` report value; ValueError saying what is wrong."""
    if not isinstance(wiped, dict) or set(wiped) != set(WIPE_FIELDS):
        raise ValueError(f"wiped must be an object with exactly {', '.join(WIPE_FIELDS)}")
    account, home, files = wiped["account"], wiped["home"], wiped["files"]
    if account is not None and not (isinstance(account, str) and re.match(SSH_USER_PATTERN, account)):
        raise ValueError(f"wiped account must be an account name or null, not {account!r}")
    if not (isinstance(home, str) and home.startswith("/") and len(home) <= 300):
        raise ValueError(f"wiped home must be an absolute path, not {home!r}")
    if type(files) is not int or files < 0:  # noqa: E721 (a bool is not a count)
        raise ValueError(f"wiped files must be a count, not {files!r}")
    return {"account": account, "home": home, "files": files}


def report_body(state: str, *, reason: str | None = None, route_slot: str | None = None,
                socket: str | None = None, pooled: bool = False, started_at: str | None = None,
                activity: dict | None = None,
                ssh_endpoint: tuple[str, int, str, str] | None = None,
                health_check: dict | None = None, wiped: dict | None = None) -> dict:
    """A status report without its `seq` (taken when it is sent); `ssh_endpoint` (host, port,
    user, host key) adds SSH_ENDPOINT_FIELDS; `health_check` (a failed start) and `wiped` (a
    stopped or failed bare-metal workload) add their fields."""
    if state not in REPORTED_STATES:
        raise ValueError(f"not a reported state: {state!r}")
    body = {
        F_STATE: state,
        F_REASON: reason[:REASON_LIMIT] if reason else None,
        F_ROUTE_SLOT: route_slot,
        F_SOCKET: socket,
        F_POOLED: bool(pooled),
        F_STARTED_AT: started_at,
        F_ACTIVITY: activity,
    }
    if ssh_endpoint is not None:
        body.update(zip(SSH_ENDPOINT_FIELDS, ssh_endpoint_check(*ssh_endpoint), strict=True))
    if health_check is not None:
        if state != FAILED or health_check.get("passed") is not False:
            raise ValueError("only a failed report carries a health check, and only a failed one")
        body[F_HEALTH_CHECK] = health_check
    if wiped is not None:
        if state not in (STOPPED, FAILED):
            raise ValueError("only a stopped or failed report says what was wiped")
        body[F_WIPED] = wipe_check(wiped)
    return body


# --- specs (what the agent gets per workload) ---------------------------------------------------

# GPU-<uuid>, MIG-<uuid> or the older MIG-GPU-<uuid>/<gi>/<ci>: nothing that could split a list.
DEVICE_PATTERN = re.compile(r"^(GPU|MIG)-[A-Za-z0-9._/-]+$")


class SpecRefused(ValueError):
    """A desired workload the agent cannot act on safely; the message says why."""


@dataclass(frozen=True)
class WorkloadSpec:
    """What every kind has: which workload, what is wanted of it, on which GPUs."""

    id: str
    kind: str
    state: str
    gpus: tuple[str, ...] = ()

    kind_name: ClassVar[str] = ""

    @property
    def wants_running(self) -> bool:
        return self.state == DESIRED_RUNNING

    def to_wire(self) -> dict:
        wire = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in wire.items()}

    @classmethod
    def _extra_from_wire(cls, item: dict) -> dict:
        """The kind's own fields, checked; SpecRefused when one is unusable."""
        return {}


def _strings(item: dict, key: str) -> tuple[str, ...]:
    value = item.get(key) or []
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise SpecRefused(f"bad {key} {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class NotebookSpec(WorkloadSpec):
    """A JupyterLab server: the image's extra options (the agent refuses any that would take
    over what it sets itself: where it listens, its auth, its kernels)."""

    jupyter_args: tuple[str, ...] = ()

    kind_name: ClassVar[str] = KIND_NOTEBOOK

    @classmethod
    def _extra_from_wire(cls, item: dict) -> dict:
        return {"jupyter_args": _strings(item, "jupyter_args")}


# One public key as an authorized_keys line takes it, without options: a type, base64, an
# optional comment. One line only: a newline would smuggle a second key (or options) in.
AUTHORIZED_KEY_PATTERN = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]{0,200})?$")
AUTHORIZED_KEYS_MAX = 50


@dataclass(frozen=True)
class GpuSliceSpec(WorkloadSpec):
    """A GPU instance reached over SSH: exactly the public keys chosen at launch may log in. The
    node picks the port from its own --ssh-ports range and reports it (SSH_ENDPOINT_FIELDS)."""

    authorized_keys: tuple[str, ...] = ()

    kind_name: ClassVar[str] = KIND_GPU_SLICE

    @classmethod
    def _extra_from_wire(cls, item: dict) -> dict:
        keys = _strings(item, "authorized_keys")
        if len(keys) > AUTHORIZED_KEYS_MAX:
            raise SpecRefused(f"more than {AUTHORIZED_KEYS_MAX} authorized keys")
        for key in keys:
            if not AUTHORIZED_KEY_PATTERN.match(key):
                raise SpecRefused(f"bad authorized key {key[:60]!r}")
        return {"authorized_keys": keys}


@dataclass(frozen=True)
class BareMetalSpec(GpuSliceSpec):
    """A whole node over SSH: as a GPU instance, with every GPU of the node in `gpus`; the agent
    runs its node health check before the hand-over and wipes the account and its home when the
    workload stops (bare metal keeps nothing between tenants, nor between stop and start)."""

    kind_name: ClassVar[str] = KIND_BARE_METAL


SPEC_TYPES: dict[str, type[WorkloadSpec]] = {KIND_NOTEBOOK: NotebookSpec,
                                             KIND_GPU_SLICE: GpuSliceSpec,
                                             KIND_BARE_METAL: BareMetalSpec}
WORKLOAD_KINDS: frozenset[str] = frozenset(SPEC_TYPES)


def spec_from_wire(item: object) -> WorkloadSpec:
    """One workload of a desired-state list; SpecRefused says why it cannot be acted on."""
    if not isinstance(item, dict):
        raise SpecRefused(f"not an object: {item!r}")
    workload_id, kind, state = item.get("id"), item.get("kind"), item.get("state")
    if not isinstance(workload_id, str) or not workload_id:
        raise SpecRefused(f"bad id {workload_id!r}")
    spec_type = SPEC_TYPES.get(kind)
    if spec_type is None:
        raise SpecRefused(f"kind {kind!r} is not one this agent runs")
    if state not in DESIRED_STATES:
        raise SpecRefused(f"unknown state {state!r}")
    gpus = _strings(item, "gpus")
    if not all(DEVICE_PATTERN.match(g) for g in gpus):
        raise SpecRefused(f"bad gpus {list(gpus)!r}")
    return spec_type(id=workload_id, kind=kind, state=state, gpus=gpus, **spec_type._extra_from_wire(item))


# --- node facts (in the inventory a node reports at registration and in heartbeats) -----------

# Where the node's own services (the coming SSH instances) are reached, and the ports they may
# take there. Both optional: an agent started without them reports null, and the node has none.
F_ADDRESS, F_SSH_PORTS = "address", "ssh_ports"
# Optional in the inventory payload: the agent's last node health check (provisioning/agent/
# health.py HealthResult.to_payload(): checked_at, passed, simulated, cuda_ran, cuda_note,
# reasons, gpus). A failed check cordons a ready node (apps/capacity/services/health.py).
F_HEALTH_CHECK = "health_check"
SSH_PORT_MIN, SSH_PORT_MAX = 1024, 65535  # never a privileged port: the agent may not be root


def ssh_ports_check(first: int, last: int) -> tuple[int, int]:
    """A node's SSH port range, first..last inclusive; ValueError saying what is wrong."""
    if type(first) is not int or type(last) is not int:  # noqa: E721 (a bool is not a port)
        raise ValueError(f"SSH ports must be whole numbers, not {first!r}-{last!r}")
    if not (SSH_PORT_MIN <= first <= last <= SSH_PORT_MAX):
        raise ValueError(f"SSH port range {first}-{last} must be FIRST-LAST with "
                         f"{SSH_PORT_MIN} <= FIRST <= LAST <= {SSH_PORT_MAX}")
    return first, last


def ssh_ports_parse(text: str) -> tuple[int, int]:
    """`22000-22099` (as the agent's --ssh-ports takes it) -> (22000, 22099)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text or "")
    if not match:
        raise ValueError(f"bad SSH port range {text!r}: expected FIRST-LAST such as 22000-22099")
    return ssh_ports_check(int(match.group(1)), int(match.group(2)))

# --- heartbeats ------------------------------------------------------------------------------------

# Optional in a heartbeat: the agent's telemetry (the body a telemetry report carries), so one
# request per interval says both "alive" and "these are the GPUs' values". A portal that takes it
# answers F_GPUS_UPDATED in the heartbeat's reply; an older portal ignores the field and does not
# answer it, and the agent then sends its telemetry apart, as it did before.
F_TELEMETRY, F_GPUS_UPDATED = "telemetry", "gpus_updated"
