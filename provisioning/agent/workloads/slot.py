"""The on-disk side of notebook servers: the workload root, slot directories, working directories,
and the Unix sockets the servers listen on.

Layout under the workload root (root-owned when the agent is root; `A` = owned by the server's
own account, which exists only while the server does, see identity.py):

    <root>/                                  0711
        <instance id>/                       0711
            work/                            A 0700  the instance's persistent working directory;
                                                     root-owned while no server holds it
        slots/<route slot>/                  0711    one per Jupyter server process
            slot.json                        0600    the server's facts (account, socket), so
                                                     that a restarted agent can re-adopt it
            gpus                             0640    GPU assignment (root:<account's group>):
                                                     comma-joined uuids, "" = none
            kernel_launcher.py               0644    copy of workloads/kernel_launcher.py
            jupyter.log                      0600    Jupyter's stdout and stderr
            work -> <root>/<id>/work | empty         Jupyter's root_dir, re-pointed on hand-out
            empty/                           A 0700  what a warm-pool server shows until handed out
            home/                            A 0700  HOME, TMPDIR, JUPYTER_DATA_DIR,
                                                     JUPYTER_CONFIG_DIR, IPYTHONDIR

Sockets live apart, under a short per-root folder (a socket path holds at most 107 bytes, and a
workload root can be long): /run/neocloud/<root digest>/ (0711) when the agent is root, else a
private folder in the temporary directory.

        <route slot>/                        A:proxy 2710  only the account and the proxy
                                                     group may reach what is inside
            jupyter.sock                     A:proxy 0660  the server; kernels use IPC sockets
                                                     in the account's private runtime folder

The slot's own files are the agent's (a workload cannot rewrite its GPU assignment or kernelspec
launcher); `home/` is the account's. No other workload account can read, list or connect to any
of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .identity import (
    RunAs,
    dir_for_workload,
    file_for_workload,
    isolation_available,
    tree_give,
    tree_reclaim,
)
from .traversal import ancestors_traversable

SLOTS = "slots"
_LAUNCHER_SOURCE = Path(__file__).with_name("kernel_launcher.py")
# Ids become path components: nothing that could climb out of the workload root.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


SOCKET_NAME = "jupyter.sock"


@dataclass(frozen=True)
class SlotPaths:
    dir: Path
    socket_dir: Path

    @property
    def workload_root(self) -> Path:
        return self.dir.parent.parent

    @property
    def socket(self) -> Path:
        return self.socket_dir / SOCKET_NAME

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    @property
    def runtime(self) -> Path:
        # Beside the socket, for a short path: kernels' IPC sockets are named after it.
        return self.socket_dir / "rt"

    @property
    def record(self) -> Path:
        return self.dir / "slot.json"

    @property
    def gpus(self) -> Path:
        return self.dir / "gpus"

    @property
    def launcher(self) -> Path:
        return self.dir / "kernel_launcher.py"

    @property
    def log(self) -> Path:
        return self.dir / "jupyter.log"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def empty(self) -> Path:
        return self.dir / "empty"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    def jupyter_env(self) -> dict[str, str]:
        home = self.home
        return {
            "HOME": str(home),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "IPYTHONDIR": str(home / "ipython"),
            "TMPDIR": str(self.tmp),  # not the host's shared /tmp
        }


def name_is_safe(name: str) -> bool:
    return bool(_SAFE_NAME.match(name)) and name not in (SLOTS,)


def workload_root_prepare(root: Path) -> None:
    """Create the workload root and the socket folder, and make them (and the Python that runs
    Jupyter) reachable by workload accounts and the proxy."""
    sockets = sockets_dir(root)
    for directory in (root, root / SLOTS, sockets.parent, sockets):
        directory.mkdir(parents=True, exist_ok=True)
        if isolation_available() or directory in (root, root / SLOTS):
            directory.chmod(0o711)
        else:
            directory.chmod(0o700)
        if isolation_available():
            os.chown(directory, 0, 0)  # a folder someone else made first is not trusted
    ancestors_traversable(root / SLOTS, holder=root)
    ancestors_traversable(sockets / "x", holder=root)
    # Jupyter runs with this agent's interpreter; under a pyenv in /root that needs /root o+x.
    for path in {Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix)}:
        ancestors_traversable(path, holder=root)


def sockets_dir(root: Path) -> Path:
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    if isolation_available():
        return Path("/run/neocloud") / digest
    return Path(tempfile.gettempdir()) / f"neocloud-{os.geteuid()}" / digest


def work_dir(root: Path, instance_id: str) -> Path:
    return root / instance_id / "work"


def work_dir_prepare(root: Path, instance_id: str, run_as: RunAs) -> Path:
    """The instance's working directory, created on its first start and kept across stops,
    handed to the account of the server that serves it now."""
    instance_dir = root / instance_id
    instance_dir.mkdir(exist_ok=True)
    instance_dir.chmod(0o711)
    work = work_dir(root, instance_id)
    if work.exists():
        tree_give(work, run_as)
    else:
        dir_for_workload(work, run_as, 0o700)
    return work


def work_dir_release(root: Path, instance_id: str) -> None:
    """Back to root when its server stops: the server's account, and so its uid, goes away."""
    tree_reclaim(work_dir(root, instance_id))


def work_dir_remove(root: Path, instance_id: str) -> None:
    shutil.rmtree(root / instance_id, ignore_errors=True)


def slot_paths(root: Path, route_slot: str) -> SlotPaths:
    return SlotPaths(root / SLOTS / route_slot, _socket_dir(root, route_slot))


def _socket_dir(root: Path, route_slot: str) -> Path:
    # A digest, not the 36-character slot: kernel IPC paths below it must fit in 107 bytes.
    return sockets_dir(root) / hashlib.sha256(route_slot.encode()).hexdigest()[:16]


def slot_prepare(paths: SlotPaths, run_as: RunAs, gpus: list[str], work: Path | None,
                 python: str, proxy_gid: int | None) -> None:
    """A fresh slot directory: assignment, launcher, kernelspec, private home, socket folder."""
    slot_dirs_remove(paths)  # leftovers of an earlier server of this slot
    paths.dir.mkdir(mode=0o711)
    paths.dir.chmod(0o711)
    gpus_write(paths, gpus, run_as)
    shutil.copyfile(_LAUNCHER_SOURCE, paths.launcher)
    paths.launcher.chmod(0o644)
    dir_for_workload(paths.empty, run_as, 0o700)
    work_link(paths, work or paths.empty)

    _socket_dir_prepare(paths.socket_dir, run_as, proxy_gid)
    dir_for_workload(paths.runtime, run_as, 0o700)
    env = paths.jupyter_env()
    for key in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR", "TMPDIR"):
        Path(env[key]).mkdir(parents=True, mode=0o700)
    kernel_dir = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [python, str(paths.launcher), str(paths.gpus), "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }, indent=1))
    # Only our kernelspec: another one (in sys.prefix, say) would bypass the GPU launcher.
    (Path(env["JUPYTER_CONFIG_DIR"]) / "jupyter_server_config.json").write_text(json.dumps({
        "KernelSpecManager": {"allowed_kernelspecs": ["python3"], "ensure_native_kernel": False},
    }, indent=1))
    paths.home.chmod(0o700)
    tree_give(paths.home, run_as)


def _socket_dir_prepare(directory: Path, run_as: RunAs, proxy_gid: int | None) -> None:
    directory.mkdir(mode=0o700, parents=True)
    if not run_as.switch:
        return  # the agent's own user: the proxy runs as it too
    # Owner: the account, so Jupyter can create its socket. Group: the proxy's, with setgid so
    # the socket inherits it; group may only pass through (x), others get nothing.
    os.chown(directory, run_as.uid, proxy_gid if proxy_gid is not None else run_as.gid)
    directory.chmod(0o2710)


def slot_dirs_remove(paths: SlotPaths) -> None:
    shutil.rmtree(paths.dir, ignore_errors=True)
    shutil.rmtree(paths.socket_dir, ignore_errors=True)


def gpus_write(paths: SlotPaths, gpus: list[str], run_as: RunAs) -> None:
    _atomic_write(paths.gpus, ",".join(gpus), 0o644, reader=run_as)


def work_link(paths: SlotPaths, target: Path) -> None:
    """Point the slot's `work` symlink at `target`, atomically (a rename over the old link)."""
    temporary = paths.dir / f".work-{os.getpid()}-{id(target)}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, paths.work)


def record_write(paths: SlotPaths, record: dict) -> None:
    _atomic_write(paths.record, json.dumps(record, indent=1), 0o600)


def record_read(paths: SlotPaths) -> dict | None:
    try:
        return json.loads(paths.record.read_text())
    except (FileNotFoundError, ValueError):
        return None


def slots_list(root: Path) -> list[SlotPaths]:
    directory = root / SLOTS
    if not directory.is_dir():
        return []
    return [SlotPaths(entry, _socket_dir(root, entry.name)) for entry in sorted(directory.iterdir())
            if entry.is_dir()]


def log_tail(paths: SlotPaths, limit: int) -> str:
    """The last lines of Jupyter's output that fit in `limit` characters."""
    try:
        with open(paths.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    lines, size = [], 0
    for line in reversed(text.strip().splitlines()):
        if size + len(line) + 1 > limit:
            break
        lines.insert(0, line)
        size += len(line) + 1
    return "\n".join(lines)


def _atomic_write(path: Path, text: str, mode: int, reader: RunAs | None = None) -> None:
    """Write `path` whole or not at all; `reader`: the one workload account that may read it."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        if reader is not None:
            file_for_workload(Path(temporary), reader)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
