"""Search permission (o+x) on the folders above a workload root, added while workloads need it
and taken back when no agent of the host needs it any more.

Workload accounts must pass through every folder above their sockets, their slots and the Python
that runs Jupyter. On a host where one of those is under a private folder (on a development
machine, /root holding the repository or a pyenv Python) the agent adds only the search bit:
names inside stay unlistable. Each change is written to a host-wide ledger with the mode it
replaced and the workload roots that rely on it; when the last of them is released (its agent
cleared its workloads: `workload_root_clear`), the original modes are put back. Several agents of
one host (a local fleet, tests) share the ledger under a lock, so one agent's release never takes
the way away from another's running notebooks. An agent that dies without releasing leaves its
entry, and the folders stay passable, which the log said when they changed.

A production host avoids all of it with --workload-root under /var/lib and the agent installed
outside /root: then nothing here changes anything.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .identity import isolation_available

log = logging.getLogger("neocloud.agent")

LEDGER_DIR = Path("/run/neocloud")
LEDGER = "traversal.json"


@contextmanager
def _ledger(directory: Path) -> Iterator[dict]:
    """The ledger {"folders": {path: original mode}, "holders": [workload roots]}, locked for
    the block and written back after it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{LEDGER}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = directory / LEDGER
        try:
            ledger = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            ledger = {"folders": {}, "holders": []}
        # A workload root that is gone needs no way through (a test's, removed with its folder).
        ledger["holders"] = [holder for holder in ledger["holders"] if Path(holder).exists()]
        ledger["folders"] = {folder: mode for folder, mode in ledger["folders"].items() if Path(folder).exists()}
        yield ledger
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(ledger, indent=1, sort_keys=True))
        os.chmod(temporary, 0o600)
        temporary.replace(path)


def ancestors_traversable(path: Path, *, holder: Path, ledger_dir: Path = LEDGER_DIR) -> list[Path]:
    """Let other users pass through every folder above `path` for as long as `holder` (a
    workload root) needs it; returns the folders this call changed."""
    if not isolation_available():
        return []
    changed = []
    name = str(holder.resolve())
    with _ledger(ledger_dir) as ledger:
        if name not in ledger["holders"]:
            ledger["holders"].append(name)
        for directory in reversed(path.resolve().parents):
            mode = stat.S_IMODE(directory.stat().st_mode)
            if mode & stat.S_IXOTH:
                continue
            ledger["folders"].setdefault(str(directory), mode)
            directory.chmod(mode | stat.S_IXOTH)
            log.warning("made %s traversable (o+x) so that workload accounts can reach %s; "
                        "restored when the agent clears its workloads", directory, path)
            changed.append(directory)
    return changed


def ancestors_release(*, holder: Path, ledger_dir: Path = LEDGER_DIR) -> list[Path]:
    """`holder` needs no passage any more; when no holder is left, put every folder's original
    mode back. Returns the folders restored."""
    if not isolation_available() or not (ledger_dir / LEDGER).exists():
        return []
    restored = []
    name = str(holder.resolve())
    with _ledger(ledger_dir) as ledger:
        ledger["holders"] = [h for h in ledger["holders"] if h != name]
        if ledger["holders"]:
            return []
        for folder, mode in sorted(ledger["folders"].items(), key=lambda item: -len(item[0])):
            try:
                # Only our bit goes: whatever else changed in the mode since then is someone else's.
                os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) & ~stat.S_IXOTH)
                restored.append(Path(folder))
                log.info("restored %s to mode %o", folder, mode)
            except FileNotFoundError:
                pass
        ledger["folders"] = {}
    return restored
