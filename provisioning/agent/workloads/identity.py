"""Who workloads run as, and the file ownership that goes with it.

A notebook runs user code, so it never runs as root: when the agent is root, Jupyter (and so its
kernels) runs as an unprivileged user (`--workload-user`, default `nobody`), with no
supplementary groups. When the agent is not root it can only run workloads as itself.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("neocloud.agent")

DEFAULT_WORKLOAD_USER = "nobody"


@dataclass(frozen=True)
class RunAs:
    """The identity of workload processes; `switch` is False when that is the agent's own."""

    name: str
    uid: int
    gid: int
    switch: bool

    def popen_kwargs(self) -> dict:
        if not self.switch:
            return {}
        # extra_groups=[] drops root's supplementary groups (gid 0 among them).
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def run_as_resolve(user: str = DEFAULT_WORKLOAD_USER) -> RunAs:
    """The workload identity: `user` when the agent is root, else the agent's own user."""
    if os.geteuid() != 0:
        own = pwd.getpwuid(os.geteuid())
        return RunAs(name=own.pw_name, uid=own.pw_uid, gid=own.pw_gid, switch=False)
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError as exc:
        raise ValueError(f"--workload-user {user!r} does not exist on this host") from exc
    if entry.pw_uid == 0:
        raise ValueError(f"--workload-user {user!r} is root: notebooks never run as root")
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def dir_for_workload(path: Path, run_as: RunAs, mode: int = 0o700) -> Path:
    """Create `path` (if missing) owned by the workload user with `mode`."""
    path.mkdir(parents=True, exist_ok=True)
    if run_as.switch:
        os.chown(path, run_as.uid, run_as.gid)
    path.chmod(mode)
    return path


def tree_give(path: Path, run_as: RunAs) -> None:
    """Hand a directory tree we prepared over to the workload user."""
    if not run_as.switch:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, run_as.uid, run_as.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), run_as.uid, run_as.gid, follow_symlinks=False)


def ancestors_traversable(path: Path, run_as: RunAs) -> list[Path]:
    """Let the workload user pass through every directory above `path`; returns what changed.

    Only the search bit (o+x) is added, never read: names inside stay unlistable. A host where
    this changes something (e.g. /root for a default state file under ~root) is better served by
    --workload-root under /var/lib and an agent installed outside /root; we log each change.
    """
    if not run_as.switch:
        return []
    changed = []
    for directory in reversed(path.resolve().parents):
        info = directory.stat()
        if _can_search(info, run_as):
            continue
        directory.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)
        log.warning("made %s traversable (o+x) so that workloads running as %s can reach %s",
                    directory, run_as.name, path)
        changed.append(directory)
    return changed


def _can_search(info: os.stat_result, run_as: RunAs) -> bool:
    if info.st_uid == run_as.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == run_as.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
