"""The on-disk side of notebook servers: the workload root, slot directories, working directories.

Layout under the workload root (root-owned when the agent is root; `U` = owned by the workload
user):

    <root>/                                  0711
        <instance id>/                       0711
            work/                            U 0700  the instance's persistent working directory
        slots/<route slot>/                  0711    one per Jupyter server process
            slot.json                        0600    the server's facts, token included, so that
                                                     a restarted agent can re-adopt it
            gpus                             0644    GPU assignment: comma-joined uuids, "" = none
            kernel_launcher.py               0644    copy of workloads/kernel_launcher.py
            jupyter.log                      0600    Jupyter's stdout and stderr
            work -> <root>/<id>/work | empty         Jupyter's root_dir, re-pointed on hand-out
            empty/                           U 0700  what a warm-pool server shows until handed out
            home/                            U 0700  HOME, and JUPYTER_DATA_DIR, _CONFIG_DIR,
                                                     _RUNTIME_DIR, IPYTHONDIR below it

The slot's own files are the agent's (a workload cannot rewrite its GPU assignment or kernelspec
launcher); `home/` is the workload user's (Jupyter writes its runtime files there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .identity import RunAs, ancestors_traversable, dir_for_workload, tree_give

SLOTS = "slots"
_LAUNCHER_SOURCE = Path(__file__).with_name("kernel_launcher.py")
# Ids become path components: nothing that could climb out of the workload root.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class SlotPaths:
    dir: Path

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
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "IPYTHONDIR": str(home / "ipython"),
        }


def name_is_safe(name: str) -> bool:
    return bool(_SAFE_NAME.match(name)) and name not in (SLOTS,)


def workload_root_prepare(root: Path, run_as: RunAs) -> None:
    """Create the workload root, and make it (and the Python that runs Jupyter) reachable."""
    for directory in (root, root / SLOTS):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o711)
    ancestors_traversable(root / SLOTS, run_as)
    # Jupyter runs with this agent's interpreter; under a pyenv in /root that needs /root o+x.
    for path in {Path(sys.executable).resolve(), Path(sys.prefix), Path(sys.base_prefix)}:
        ancestors_traversable(path, run_as)


def work_dir(root: Path, instance_id: str) -> Path:
    return root / instance_id / "work"


def work_dir_prepare(root: Path, instance_id: str, run_as: RunAs) -> Path:
    """The instance's working directory, created on its first start and kept across stops."""
    instance_dir = root / instance_id
    instance_dir.mkdir(exist_ok=True)
    instance_dir.chmod(0o711)
    work = work_dir(root, instance_id)
    if not work.exists():
        dir_for_workload(work, run_as, 0o700)
    return work


def work_dir_remove(root: Path, instance_id: str) -> None:
    shutil.rmtree(root / instance_id, ignore_errors=True)


def slot_paths(root: Path, route_slot: str) -> SlotPaths:
    return SlotPaths(root / SLOTS / route_slot)


def slot_prepare(paths: SlotPaths, run_as: RunAs, gpus: list[str], work: Path | None,
                 python: str) -> None:
    """A fresh slot directory: assignment, launcher, kernelspec, private home."""
    shutil.rmtree(paths.dir, ignore_errors=True)  # leftovers of an earlier server of this slot
    paths.dir.mkdir(mode=0o711)
    paths.dir.chmod(0o711)
    gpus_write(paths, gpus)
    shutil.copyfile(_LAUNCHER_SOURCE, paths.launcher)
    paths.launcher.chmod(0o644)
    dir_for_workload(paths.empty, run_as, 0o700)
    work_link(paths, work or paths.empty)

    env = paths.jupyter_env()
    for key in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
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


def gpus_write(paths: SlotPaths, gpus: list[str]) -> None:
    _atomic_write(paths.gpus, ",".join(gpus), 0o644)


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
    return [SlotPaths(entry) for entry in sorted(directory.iterdir()) if entry.is_dir()]


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


def _atomic_write(path: Path, text: str, mode: int) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
