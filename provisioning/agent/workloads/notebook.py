"""One JupyterLab server: start, wait until it answers, hand out, read activity, stop, re-adopt.

A server lives in a slot (see `slot.py`), served under `/nb/<route slot>/`: the instance id for
a cold start, a random uuid for a warm-pool server (so a pooled server's URL does not depend on
which instance it will serve). The token is a random per-server secret handed to Jupyter in its
environment (JUPYTER_TOKEN), not on its command line: /proc/<pid>/cmdline is world-readable.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from . import slot
from .identity import RunAs
from .process import proc_alive, proc_start_time, proc_with_arg, tree_stop

log = logging.getLogger("neocloud.agent")

REASON_LIMIT = 1000
DEFAULT_START_TIMEOUT_S = 60.0
_POLL_S = 0.1
# What a workload inherits from the agent's environment; nothing else (the agent's environment
# may hold its registration token).
_ENV_PASSED = ("PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
               "SSL_CERT_FILE", "SSL_CERT_DIR")
# Options the agent owns: an image's jupyter_args may not move, expose or unlock the server.
_PROTECTED = {"ip", "port", "port_retries", "base_url", "root_dir", "notebook_dir", "token",
              "password", "allow_root", "allow_origin", "allow_origin_pat", "disable_check_xsrf",
              "allow_remote_access", "identity_provider_class", "authorizer_class",
              "config_file", "config", "allowed_kernelspecs", "kernel_spec_manager_class"}
_PROTECTED_CLASSES = {"IdentityProvider", "PasswordIdentityProvider", "KernelSpecManager"}


@dataclass
class NotebookConfig:
    workload_root: Path
    run_as: RunAs
    host_address: str = "127.0.0.1"
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    python: str = sys.executable


@dataclass
class NotebookServer:
    route_slot: str
    host: str
    port: int
    token: str
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

    def url(self, path: str) -> str:
        return f"http://{_connect_host(self.host)}:{self.port}/nb/{self.route_slot}/{path}"

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
    """Start `jupyter lab` in a fresh slot; returns at once (see `server_ready_wait`)."""
    paths = slot.slot_paths(config.workload_root, route_slot)
    try:
        work = (slot.work_dir_prepare(config.workload_root, instance_id, config.run_as)
                if instance_id else None)
        slot.slot_prepare(paths, config.run_as, gpus, work, config.python)
        port = _port_free(config.host_address)
    except OSError as exc:  # a full disk, a --host-address that is not this host's, ...
        raise StartFailed(f"cannot prepare the notebook server: {exc}") from exc
    server = NotebookServer(route_slot=route_slot, host=config.host_address, port=port,
                            token=secrets.token_hex(24), pid=0, pid_start=None,
                            instance_id=instance_id, gpus=list(gpus),
                            jupyter_args=list(jupyter_args), paths=paths)
    argv = [config.python, "-m", "jupyterlab", "--no-browser", f"--ip={config.host_address}",
            f"--port={server.port}", "--ServerApp.port_retries=0",
            f"--ServerApp.base_url=/nb/{route_slot}/", f"--ServerApp.root_dir={paths.work}",
            "--ServerApp.allow_origin=*", "--ServerApp.disable_check_xsrf=False",
            "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",
            *jupyter_args]
    env = {key: value for key, value in os.environ.items()
           if key in _ENV_PASSED or key.startswith("LC_")}
    env.update(paths.jupyter_env())
    env.update({
        "PATH": os.pathsep.join([os.path.dirname(config.python),
                                 env.get("PATH", "/usr/local/bin:/usr/bin:/bin")]),
        "USER": config.run_as.name, "LOGNAME": config.run_as.name,
        "JUPYTER_TOKEN": server.token,
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
                **config.run_as.popen_kwargs(),
            )
        except OSError as exc:
            slot_remove(server)
            raise StartFailed(f"cannot run JupyterLab as {config.run_as.name}: {exc}") from exc
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
    work = slot.work_dir_prepare(config.workload_root, instance_id, config.run_as)
    # Assignment first: a kernel started the moment the UI opens must already see its GPUs.
    slot.gpus_write(server.paths, gpus)
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
    """Stop the server and its kernels (TERM, 5 s grace, KILL) and remove its slot directory."""
    if server.pid:
        tree_stop(server.pid, server.process)
    slot_remove(server)


def slot_remove(server: NotebookServer) -> None:
    if server.paths is not None:
        shutil.rmtree(server.paths.dir, ignore_errors=True)


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
    """The server an earlier agent run left in `paths`, if it runs and answers with its token.

    Anything else found there (a dead server, one that does not answer, a torn record) is
    stopped and its slot removed, so that no process is left that this run cannot track.
    """
    record = slot.record_read(paths) or {}
    try:
        server = NotebookServer(**record)
    except TypeError:
        server = None
    if server is None:
        # The agent died between starting Jupyter and writing its record: find it by its slot.
        for pid in proc_with_arg(f"--ServerApp.root_dir={paths.work}"):
            tree_stop(pid)
        shutil.rmtree(paths.dir, ignore_errors=True)
        return None
    server.paths = paths
    ours = (bool(server.pid) and proc_alive(server.pid, server.pid_start)
            and server.pid in proc_with_arg(f"--ServerApp.root_dir={paths.work}"))
    if ours and _answers(server):
        return server
    if not ours:
        server.pid = 0  # gone, or the pid now belongs to another process: signal nothing
    server_stop(server)
    return None


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
    request = urllib.request.Request(server.url(path),
                                     headers={"Authorization": f"token {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


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


def _port_free(host: str) -> int:
    # The kernel picks a free port; Jupyter binds it a moment later with port_retries=0, so a
    # lost race fails the start loudly instead of serving on a port we do not know.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _connect_host(host: str) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host
