"""GPU instances reached over SSH (protocol KIND_GPU_SLICE): one OpenSSH `sshd` per instance.

Built like a notebook server (notebook.py), run by the same supervisor (`ssh_supervisor.py`
only swaps what a "server" is; this module imports neither, so notebook.workload_root_clear can
clear SSH servers too): a fresh unprivileged account `nc-<hex>` per start (identity.py), the
instance's persistent working directory as its home (slot.work_dir_prepare / release, so what is
written there survives a stop and a start), and everything removed with the account on stop.

The listener is `/usr/sbin/sshd -D -e -f <config>` run by the agent (root), with a configuration
of its own that the system's sshd never reads; after authentication sshd runs the session as the
instance's account (privilege separation), never as root. Only that account may log in
(AllowUsers), only with exactly the public keys chosen at launch (AuthorizedKeysFile: a file the
agent writes; no password, keyboard-interactive or root login), and every session gets the
allocated GPUs in CUDA_VISIBLE_DEVICES (sshd_config SetEnv, OpenSSH >= 8.7).

Its files live in a slot folder beside the notebook sockets (slot.sockets_dir: under /run when
the agent is root), every part of the way from / root-owned and not writable by others, which is
what sshd's StrictModes demands of the way to an AuthorizedKeysFile; so StrictModes stays on:

    <sockets dir>/ssh-<digest of instance id>/   0711
        slot.json          0600  the server's facts (port, account, pid) so a restarted agent
                                 re-adopts it, and the port stays taken while the slot exists
        sshd_config        0600
        host_key[.pub]     0600  its own host key, made for this start with ssh-keygen
        authorized_keys    0640  root:<account's group>: sshd reads it as the account
        sshd.log           0600  sshd's output (-e)

A port is the first one of the node's --ssh-ports range that no other SSH slot of this agent
holds and that nothing else listens on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from provisioning.protocol import KIND_GPU_SLICE, REASON_LIMIT

from . import slot
from .identity import RunAs, account_create, account_remove, isolation_available, processes_kill
from .process import proc_alive, proc_start_time, tree_stop

log = logging.getLogger("neocloud.agent")

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (Debian's service makes it)
DEFAULT_START_TIMEOUT_S = 20.0
_SLOT_PREFIX = "ssh-"
_PORTS_LOCK = threading.Lock()  # two starts never take the same port


class StartFailed(Exception):
    """sshd did not come up; the message is the human reason (with sshd's output)."""


class StartCancelled(Exception):
    """The workload's desired state changed (or the agent is stopping) while it was starting."""


@dataclass
class SshConfig:
    workload_root: Path
    address: str | None = None  # the node's --address: where sshd listens and users connect
    ssh_ports: tuple[int, int] | None = None  # the node's --ssh-ports, inclusive
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S


@dataclass
class SshServer:
    instance_id: str
    workload_root: str
    host: str
    port: int
    account: dict  # RunAs.record()
    gpus: list[str] = field(default_factory=list)
    pid: int = 0
    pid_start: str | None = None
    started_at: str | None = None
    host_key: str = ""  # its public host key, "ssh-ed25519 AAAA..." (reported with the endpoint)
    # The workload kind it serves (gpu_slice, bare_metal): which runner re-adopts it.
    kind: str = KIND_GPU_SLICE
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    dir: Path | None = field(default=None, repr=False, compare=False)

    @property
    def run_as(self) -> RunAs:
        return RunAs.from_record(self.account)

    @property
    def endpoint(self) -> tuple[str, int, str, str]:
        return self.host, self.port, self.run_as.name, self.host_key

    def record(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("process", "dir")}


def ssh_available() -> str | None:
    """Why this host cannot run SSH workloads, or None when it can."""
    for tool in (SSHD, SSH_KEYGEN):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (Debian: apt-get install openssh-server)"
    return None


def ssh_slot_dir(root: Path, instance_id: str) -> Path:
    digest = hashlib.sha256(instance_id.encode()).hexdigest()[:16]
    return slot.sockets_dir(root) / f"{_SLOT_PREFIX}{digest}"


def ssh_slots_list(root: Path) -> list[Path]:
    directory = slot.sockets_dir(root)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(_SLOT_PREFIX))


def sshd_config_text(*, directory: Path, host: str, port: int, user: str, gpus: list[str],
                     strict_modes: bool) -> str:
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [
        f"ListenAddress {listen}",
        f"HostKey {directory / 'host_key'}",
        "PidFile none",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}",
        "AuthorizedPrincipalsFile none",
        "AuthorizedKeysCommand none",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin no",
        "UsePAM no",
        # Root-owned all the way up when the agent is root; else (development, no isolation) the
        # slot is under the shared temporary folder, which StrictModes would always refuse.
        f"StrictModes {'yes' if strict_modes else 'no'}",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel INFO",
        f"Subsystem sftp {SFTP_SERVER}",
        # Empty: no GPU at all (an empty CUDA_VISIBLE_DEVICES hides every device).
        f"SetEnv CUDA_VISIBLE_DEVICES={','.join(gpus)}",
    ]
    return "\n".join(lines) + "\n"


def ssh_start(config: SshConfig, *, instance_id: str, gpus: list[str],
              authorized_keys: list[str], kind: str = KIND_GPU_SLICE) -> SshServer:
    """Start the instance's sshd under a fresh account; returns at once (see `ssh_ready_wait`)."""
    missing = ssh_available()
    if missing:
        raise StartFailed(f"this node cannot run SSH instances: {missing}")
    if not config.address or not config.ssh_ports:
        raise StartFailed("this node has no address or SSH port range for SSH instances "
                          "(the agent's --address and --ssh-ports)")
    if not authorized_keys:
        raise StartFailed("no public key was chosen for this instance")
    directory = ssh_slot_dir(config.workload_root, instance_id)
    for pid in _sshd_pids(directory):  # leftovers of an earlier server of this instance
        tree_stop(pid, grace_s=2.0)
    _slot_remove(directory)
    home = slot.work_dir(config.workload_root, instance_id)
    try:
        run_as = account_create(workload_root=config.workload_root, home=home, ssh_login=True)
    except OSError as exc:
        raise StartFailed(f"cannot create the instance's account: {exc}") from exc
    server = SshServer(instance_id=instance_id, workload_root=str(config.workload_root),
                       host=config.address, port=0,
                       account=run_as.record(), gpus=list(gpus), dir=directory, kind=kind)
    try:
        slot.work_dir_prepare(config.workload_root, instance_id, run_as)
        directory.mkdir(mode=0o711)
        directory.chmod(0o711)
        server.port = _port_take(config, directory, server)
        _slot_files_write(directory, server, run_as, authorized_keys)
    except (OSError, StartFailed) as exc:
        ssh_stop(server)
        if isinstance(exc, StartFailed):
            raise
        raise StartFailed(f"cannot prepare the instance's SSH server: {exc}") from exc
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    argv = [SSHD, "-D", "-e", "-f", str(directory / "sshd_config")]
    log_path = directory / "sshd.log"
    with open(log_path, "ab") as output:
        os.chmod(log_path, 0o600)
        try:
            # Root (or the agent's user): sshd needs it to switch to the account after the key
            # check. Nothing of the agent's environment (its token) is passed on.
            server.process = subprocess.Popen(
                argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/")
        except OSError as exc:
            ssh_stop(server)
            raise StartFailed(f"cannot run sshd: {exc}") from exc
    server.pid = server.process.pid
    server.pid_start = proc_start_time(server.pid)
    try:
        _record_write(directory, server)
    except BaseException:
        ssh_stop(server)  # never leave a process nobody can find again
        raise
    return server


def ssh_ready_wait(server: SshServer, timeout_s: float,
                   cancelled: Callable[[], bool] = lambda: False) -> None:
    """Wait until sshd answers with its SSH banner; sets `started_at`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cancelled():
            raise StartCancelled()
        if not ssh_alive(server):
            raise StartFailed(ssh_exit_reason(server, "before it was ready"))
        if _banner(server.host, server.port):
            server.started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            _record_write(server.dir, server)
            return
        if time.monotonic() > deadline:
            raise StartFailed(_with_output(server, f"sshd did not answer within {timeout_s:g} s"))
        time.sleep(0.05)


def ssh_alive(server: SshServer) -> bool:
    if server.process is not None:
        return server.process.poll() is None
    return bool(server.pid) and proc_alive(server.pid, server.pid_start)


def ssh_exit_reason(server: SshServer, when: str) -> str:
    code = server.process.poll() if server.process is not None else None
    status = f"exited with code {code}" if code is not None else "exited"
    return _with_output(server, f"sshd {status} {when}")


def ssh_stop(server: SshServer) -> None:
    """Stop sshd and every session (TERM, grace, KILL), then every process of the account, take
    the home back to root, remove the account and the slot."""
    if server.pid:
        tree_stop(server.pid, server.process, grace_s=2.0)
    if server.dir is not None:  # one whose record was lost or whose pid we could not trust
        for pid in _sshd_pids(server.dir):
            tree_stop(pid, grace_s=2.0)
    if server.run_as.switch:
        processes_kill(server.run_as.uid)
    slot.work_dir_release(Path(server.workload_root), server.instance_id)
    account_remove(server.run_as)
    if server.dir is not None:
        _slot_remove(server.dir)


def ssh_slot_kind(directory: Path) -> str:
    """The kind of the workload whose slot this is (a record without one, or none readable: a
    GPU instance's, whose runner then clears it)."""
    try:
        kind = json.loads((directory / "slot.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return KIND_GPU_SLICE
    return kind if isinstance(kind, str) else KIND_GPU_SLICE


def ssh_adopt(config: SshConfig, directory: Path) -> SshServer | None:
    """The sshd an earlier agent run left in `directory` if it still runs; anything else found
    there is stopped and removed."""
    try:
        record = json.loads((directory / "slot.json").read_text())
        server = SshServer(**record)
    except (OSError, ValueError, TypeError):
        for pid in _sshd_pids(directory):
            tree_stop(pid, grace_s=2.0)
        _slot_remove(directory)  # its account, if any, is removed as an orphan by the service
        return None
    server.dir = directory
    if not server.host_key:  # a record written before host keys were reported
        try:
            server.host_key = _host_key_read(directory)
        except OSError:
            server.pid = 0
    ours = (bool(server.pid) and proc_alive(server.pid, server.pid_start)
            and server.pid in _sshd_pids(directory))
    if not ours:
        server.pid = 0
    if server.pid and _banner(server.host, server.port, timeout_s=5):
        return server
    ssh_stop(server)
    return None


def ssh_root_clear(root: Path) -> int:
    """Stop every SSH server of this workload root (tools and tests; a running agent never does)."""
    stopped = 0
    for directory in ssh_slots_list(root):
        server = ssh_adopt(SshConfig(workload_root=root), directory)
        if server is not None:
            ssh_stop(server)
            stopped += 1
    return stopped


# --- helpers ------------------------------------------------------------------------------------


def _port_take(config: SshConfig, directory: Path, server: SshServer) -> int:
    """The first port of the range no other slot holds and nothing listens on; recorded in the
    slot before the lock is let go, so a concurrent start sees it taken."""
    first, last = config.ssh_ports
    with _PORTS_LOCK:
        taken = set()
        for other in ssh_slots_list(config.workload_root):
            try:
                taken.add(int(json.loads((other / "slot.json").read_text())["port"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for port in range(first, last + 1):
            if port in taken or not _port_free(config.address, port):
                continue
            server.port = port
            _record_write(directory, server)
            return port
    raise StartFailed(f"every SSH port of this node ({first}-{last}) is taken")


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _slot_files_write(directory: Path, server: SshServer, run_as: RunAs,
                      authorized_keys: list[str]) -> None:
    done = subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C",
                           f"neocloud {server.instance_id}", "-f", str(directory / "host_key")],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise StartFailed(f"ssh-keygen failed: {done.stderr.strip()}")
    (directory / "host_key").chmod(0o600)
    server.host_key = _host_key_read(directory)
    keys = directory / "authorized_keys"
    keys.write_text("".join(key.strip() + "\n" for key in authorized_keys))
    # sshd reads it as the account (never writes): root-owned, the account's group may read.
    if run_as.switch:
        os.chown(keys, 0, run_as.gid)
        keys.chmod(0o640)
    else:
        keys.chmod(0o600)
    config = directory / "sshd_config"
    config.write_text(sshd_config_text(directory=directory, host=server.host, port=server.port,
                                       user=run_as.name, gpus=server.gpus,
                                       strict_modes=isolation_available()))
    config.chmod(0o600)


def _host_key_read(directory: Path) -> str:
    return " ".join((directory / "host_key.pub").read_text().split()[:2])  # no comment


def _record_write(directory: Path, server: SshServer) -> None:
    temporary = directory / ".slot.json.tmp"
    temporary.write_text(json.dumps(server.record(), indent=1))
    temporary.chmod(0o600)
    os.replace(temporary, directory / "slot.json")


def _slot_remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _sshd_pids(directory: Path) -> list[int]:
    """The sshd processes of this slot. Not proc_with_arg: sshd rewrites its command line into
    one title ("sshd: /usr/sbin/sshd -D -e -f <config> [listener] ..."), so it is a substring."""
    needle = f" -f {directory / 'sshd_config'}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if needle + b" " in cmdline.rstrip() + b" ":
                found.append(int(entry))
    return found


def _banner(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            return connection.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _with_output(server: SshServer, reason: str) -> str:
    tail = ""
    if server.dir is not None:
        try:
            text = (server.dir / "sshd.log").read_text(errors="replace").strip()
            tail = text[-(REASON_LIMIT - len(reason) - 20):]
        except OSError:
            pass
    return f"{reason}; its output ends:\n{tail}" if tail else reason
