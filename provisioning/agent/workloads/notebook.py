"""One JupyterLab server: start, wait until it answers, hand out, read activity, stop, re-adopt.

A server lives in a slot (see `slot.py`), served under `/nb/<route slot>/`: the instance id for
a cold start, a random uuid for a warm-pool server (so a pooled server's URL does not depend on
which instance it will serve).

Each server runs as a Unix account of its own (identity.py), created for it and removed with it,
and listens on a Unix socket that only that account and the front proxy's group can reach; its
kernels talk over IPC sockets in the account's private runtime folder. So the server has no
token: reaching its socket is the authentication, and nothing secret is put in the page Jupyter
sends to the browser. Another instance's account on the same node can neither connect to it nor
read its environment, home or working directory.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from provisioning.protocol import REASON_LIMIT

from . import slot
from .identity import RunAs, account_create, account_remove, accounts_of_root, processes_kill
from .process import proc_alive, proc_start_time, proc_with_arg, tree_stop
from .ssh import ssh_root_clear
from .traversal import ancestors_release

log = logging.getLogger("neocloud.agent")

DEFAULT_START_TIMEOUT_S = 60.0
_POLL_S = 0.1
# What a workload inherits from the agent's environment; nothing else (the agent's environment
# may hold its registration token).
_ENV_PASSED = ("PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
               "SSL_CERT_FILE", "SSL_CERT_DIR")
# Options the agent owns: an image's jupyter_args may not move, expose or unlock the server.
_PROTECTED = {"ip", "port", "port_retries", "sock", "sock_mode", "base_url", "root_dir",
              "notebook_dir", "token", "password", "allow_root", "allow_origin", "allow_origin_pat",
              "disable_check_xsrf", "allow_remote_access", "identity_provider_class",
              "authorizer_class", "config_file", "config", "allowed_kernelspecs",
              "kernel_spec_manager_class", "transport"}
_PROTECTED_CLASSES = {"IdentityProvider", "PasswordIdentityProvider", "KernelSpecManager",
                      "KernelManager", "MappingKernelManager", "AsyncMappingKernelManager"}


@dataclass
class NotebookConfig:
    workload_root: Path
    proxy_gid: int | None = None  # the group whose members may connect (None: agent not root)
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    python: str = sys.executable


@dataclass
class NotebookServer:
    route_slot: str
    socket: str
    account: dict  # RunAs.record() of the server's own account
    pid: int
    pid_start: str | None
    instance_id: str | None = None  # None: an unassigned warm-pool server
    pooled: bool = False
    gpus: list[str] = field(default_factory=list)
    jupyter_args: list[str] = field(default_factory=list)
    started_at: str | None = None  # when Jupyter first answered (for pooled: the hand-out)
    handed_out_at: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    paths: slot.SlotPaths | None = field(default=None, repr=False, compare=False)

    @property
    def run_as(self) -> RunAs:
        return RunAs.from_record(self.account)

    def record(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("process", "paths")}


class StartFailed(Exception):
    """The server did not come up; the message is the human reason (with Jupyter's output)."""


class StartCancelled(Exception):
    """The workload's desired state changed (or the agent is stopping) while it was starting."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def jupyter_args_refusal(args: list[str]) -> str | None:
    """Why the agent will not pass these image arguments to Jupyter, or None when it will."""
    for arg in args:
        if not isinstance(arg, str) or not arg.startswith("--"):
            return f"jupyter_args must be --options, got {arg!r}"
        option = arg[2:].split("=", 1)[0]
        owner, _, trait = option.rpartition(".")
        if trait.replace("-", "_") in _PROTECTED or owner in _PROTECTED_CLASSES:
            return f"jupyter_args may not set {option}: the agent sets it"
    return None


def server_start(config: NotebookConfig, *, route_slot: str, instance_id: str | None,
                 gpus: list[str], jupyter_args: list[str]) -> NotebookServer:
    """Start `jupyter lab` in a fresh slot under a new account; returns at once (see
    `server_ready_wait`)."""
    paths = slot.slot_paths(config.workload_root, route_slot)
    try:
        run_as = account_create(workload_root=config.workload_root, home=paths.home)
    except OSError as exc:
        raise StartFailed(f"cannot create the notebook's account: {exc}") from exc
    server = NotebookServer(route_slot=route_slot, socket=str(paths.socket),
                            account=run_as.record(), pid=0, pid_start=None,
                            instance_id=instance_id, gpus=list(gpus),
                            jupyter_args=list(jupyter_args), paths=paths)
    try:
        work = (slot.work_dir_prepare(config.workload_root, instance_id, run_as)
                if instance_id else None)
        slot.slot_prepare(paths, run_as, gpus, work, config.python, config.proxy_gid)
    except OSError as exc:  # a full disk, ...
        server_stop(server)
        raise StartFailed(f"cannot prepare the notebook server: {exc}") from exc
    argv = [config.python, "-m", "jupyterlab", "--no-browser",
            f"--ServerApp.sock={paths.socket}", "--ServerApp.sock_mode=0660",
            # No token: the socket's permissions are the authentication (see the docstring).
            "--IdentityProvider.token=",
            # The proxy forwards the browser's Host; the socket already decides who gets in.
            "--ServerApp.allow_remote_access=True",
            f"--ServerApp.base_url=/nb/{route_slot}/", f"--ServerApp.root_dir={paths.work}",
            "--ServerApp.disable_check_xsrf=False",
            "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",
            # Kernels on IPC sockets in the private runtime folder, not on loopback TCP ports
            # that every account on the node could connect to (and read iopub from).
            "--KernelManager.transport=ipc",
            *jupyter_args]
    env = {key: value for key, value in os.environ.items()
           if key in _ENV_PASSED or key.startswith("LC_")}
    env.update(paths.jupyter_env())
    env.update({
        "PATH": os.pathsep.join([os.path.dirname(config.python),
                                 env.get("PATH", "/usr/local/bin:/usr/bin:/bin")]),
        "USER": run_as.name, "LOGNAME": run_as.name,
        "JUPYTER_PLATFORM_DIRS": "1",
        # The server itself needs no GPU; kernels get theirs from the launcher and the slot file.
        "CUDA_VISIBLE_DEVICES": ",".join(gpus),
        "PYTHONUNBUFFERED": "1",
    })
    with open(paths.log, "ab") as output:
        os.chmod(paths.log, 0o600)
        try:
            server.process = subprocess.Popen(
                argv, env=env, cwd=paths.home, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True, umask=0o077,
                **run_as.popen_kwargs(),
            )
        except OSError as exc:
            server_stop(server)
            raise StartFailed(f"cannot run JupyterLab as {run_as.name}: {exc}") from exc
    server.pid = server.process.pid
    server.pid_start = proc_start_time(server.pid)
    try:
        slot.record_write(paths, server.record())
    except BaseException:
        server_stop(server)  # never leave a process nobody can find again
        raise
    return server


def server_ready_wait(server: NotebookServer, timeout_s: float,
                      cancelled: Callable[[], bool] = lambda: False) -> None:
    """Poll `api/status` until it answers 200; sets `started_at`. Raises StartFailed/Cancelled."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cancelled():
            raise StartCancelled()
        if not server_alive(server):
            raise StartFailed(server_exit_reason(server, "before it was ready"))
        if _get(server, "api/status", timeout_s=2) is not None:
            server.started_at = now_iso()
            slot.record_write(server.paths, server.record())
            return
        if time.monotonic() > deadline:
            raise StartFailed(_with_output(
                server, f"JupyterLab did not answer within {timeout_s:g} s"))
        time.sleep(_POLL_S)


def server_assign(server: NotebookServer, instance_id: str, gpus: list[str],
                  config: NotebookConfig) -> None:
    """Hand a warm-pool server to an instance: its GPUs, then its working directory."""
    work = slot.work_dir_prepare(config.workload_root, instance_id, server.run_as)
    # Assignment first: a kernel started the moment the UI opens must already see its GPUs.
    slot.gpus_write(server.paths, gpus, server.run_as)
    slot.work_link(server.paths, work)
    server.instance_id, server.gpus, server.pooled = instance_id, list(gpus), True
    server.handed_out_at = server.started_at = now_iso()
    slot.record_write(server.paths, server.record())


def server_alive(server: NotebookServer) -> bool:
    if server.process is not None:
        return server.process.poll() is None
    return proc_alive(server.pid, server.pid_start)


def server_exit_reason(server: NotebookServer, when: str) -> str:
    code = server.process.poll() if server.process is not None else None
    status = f"exited with code {code}" if code is not None else "exited"
    return _with_output(server, f"JupyterLab {status} {when}")


def server_stop(server: NotebookServer) -> None:
    """Stop the server and its kernels (TERM, 5 s grace, KILL), take its instance's working
    directory back, remove its slot and its account (with anything still running as it)."""
    if server.pid:
        tree_stop(server.pid, server.process)
    # What left the tree (a daemon of the user's) dies before the working directory is taken
    # back, so nothing writes into it while it is handed over, and the account goes last, so its
    # uid is not free for a new account while the old files still carry it.
    if server.run_as.switch:
        processes_kill(server.run_as.uid)
    if server.instance_id and server.paths is not None:
        slot.work_dir_release(server.paths.workload_root, server.instance_id)
    account_remove(server.run_as)
    if server.paths is not None:
        slot.slot_dirs_remove(server.paths)


def server_activity(server: NotebookServer) -> dict | None:
    """Idle-culling facts from Jupyter itself, or None when it does not answer."""
    status = _get(server, "api/status")
    kernels = _get(server, "api/kernels?no_track_activity=1")  # our poll is not user activity
    if status is None or kernels is None:
        return None
    last = _iso_normalized(status.get("last_activity"))
    if server.handed_out_at and (last is None or last < server.handed_out_at):
        last = server.handed_out_at  # a pooled server's earlier idleness is not this instance's
    return {
        "last_activity": last,
        "kernels": int(status.get("kernels") or 0),
        "busy_kernels": sum(1 for k in kernels if k.get("execution_state") == "busy"),
        "connections": int(status.get("connections") or 0),
    }


def server_adopt(paths: slot.SlotPaths) -> NotebookServer | None:
    """The server an earlier agent run left in `paths`, if it runs and answers on its socket.

    Anything else found there (a dead server, one that does not answer, a torn record) is
    stopped and its slot removed, so that no process is left that this run cannot track.
    """
    server = _slot_server_read(paths)
    if server is None:
        return None
    if server.pid and _answers(server):
        return server
    server_stop(server)
    return None


def workload_root_clear(root: Path) -> int:
    """Stop every server under `root` (SSH instances' sshd too) and remove every account made
    for it; returns how many servers were stopped. For tools and tests, and a node taken out of
    service: a running agent never calls it (its servers outlive its restarts, see
    supervisor.adopt)."""
    stopped = ssh_root_clear(root)
    for paths in slot.slots_list(root):
        server = _slot_server_read(paths)
        if server is not None:
            server_stop(server)
            stopped += 1
    for account in accounts_of_root(root):
        account_remove(account)
    ancestors_release(holder=root)
    return stopped


def _slot_server_read(paths: slot.SlotPaths) -> NotebookServer | None:
    """The server recorded in `paths`, its pid cleared unless that process is still the server;
    None for a torn record, whose process (found by its slot) is stopped and slot removed."""
    try:
        server = NotebookServer(**(slot.record_read(paths) or {}))
    except TypeError:
        # The agent died between starting Jupyter and writing its record: find it by its slot.
        for pid in proc_with_arg(f"--ServerApp.root_dir={paths.work}"):
            tree_stop(pid)
        slot.slot_dirs_remove(paths)  # its account, if any, is found by accounts_of_root
        return None
    server.paths = paths
    ours = (bool(server.pid) and proc_alive(server.pid, server.pid_start)
            and server.pid in proc_with_arg(f"--ServerApp.root_dir={paths.work}"))
    if not ours:
        server.pid = 0  # gone, or the pid now belongs to another process: signal nothing
    return server


def _answers(server: NotebookServer, patience_s: float = 15.0) -> bool:
    # A loaded host may be slow to answer; killing a user's live server by mistake is worse.
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        if _get(server, "api/status", timeout_s=3) is not None:
            return True
        if not server_alive(server):
            return False
        time.sleep(0.5)
    return False


def _get(server: NotebookServer, path: str, timeout_s: float = 5) -> dict | list | None:
    """GET a Jupyter API path over the server's Unix socket (the agent is root or its account)."""
    connection = UnixHTTPConnection(server.socket, timeout=timeout_s)
    try:
        connection.request("GET", f"/nb/{server.route_slot}/{path}", headers={"Host": "localhost"})
        response = connection.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: how the agent (and the tests, as the proxy would) reach a server."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _with_output(server: NotebookServer, reason: str) -> str:
    tail = slot.log_tail(server.paths, REASON_LIMIT - len(reason) - 20) if server.paths else ""
    return f"{reason}; its output ends:\n{tail}" if tail else reason


def _iso_normalized(text: str | None) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
