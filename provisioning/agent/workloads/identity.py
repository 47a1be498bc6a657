"""Who workloads run as: one fresh Unix account per workload server, and the files that go with it.

A notebook runs user code, so it never runs as root and never shares an account with another
instance: when the agent is root, every server (a cold start or a warm-pool server) gets an
account of its own, created here before it starts and removed when it stops. That is what keeps
tenants on one node apart: another account cannot read the server's /proc/<pid>/environ, its home,
its working directory, its Jupyter socket or its kernels' IPC sockets.

Accounts are `nc-<12 hex>`, system accounts with their own group, no shell and no supplementary
groups; the GECOS field names the agent's workload root, so an agent can find (and remove) the
accounts it left behind when it died between creating one and recording it.

When the agent is not root it can only run workloads as itself: nothing is isolated then, which
the agent says in its log at start (development only).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("neocloud.agent")

ACCOUNT_PREFIX = "nc-"
# The group whose members may connect to workload sockets: the front proxy's workers run in it.
DEFAULT_PROXY_GROUP = "neocloud-proxy"
_NOLOGIN = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(p).exists()),
                "/bin/false")
_LOGIN_SHELL = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
# World-writable places where a removed account could leave files for the next owner of its uid.
_SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")
# useradd/userdel lock /etc/passwd; several threads (and agents) of one host take turns.
_ACCOUNTS_LOCK = threading.Lock()
_PASSWD_RETRIES = 20


@dataclass(frozen=True)
class RunAs:
    """The identity of one workload's processes; `switch` is False when that is the agent's own."""

    name: str
    uid: int
    gid: int
    switch: bool

    def popen_kwargs(self) -> dict:
        if not self.switch:
            return {}
        # extra_groups=[] drops root's supplementary groups (gid 0 among them).
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> RunAs:
        return cls(name=str(record["name"]), uid=int(record["uid"]), gid=int(record["gid"]),
                   switch=bool(record["switch"]))


def isolation_available() -> bool:
    """Per-workload accounts need root; without it every workload runs as the agent itself."""
    return os.geteuid() == 0


def agent_identity() -> RunAs:
    own = pwd.getpwuid(os.geteuid())
    return RunAs(name=own.pw_name, uid=own.pw_uid, gid=own.pw_gid, switch=False)


def proxy_group_ensure(name: str = DEFAULT_PROXY_GROUP) -> int | None:
    """The gid of the proxy group (created when missing), or None when the agent is not root."""
    if not isolation_available():
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    with _ACCOUNTS_LOCK:
        _passwd_tool(["groupadd", "--system", name], exists_ok=9)
    return grp.getgrnam(name).gr_gid


def account_create(*, workload_root: Path, home: Path, ssh_login: bool = False) -> RunAs:
    """A new unprivileged account for one workload server (the agent's own user when not root).

    `ssh_login`: an account people log in to over SSH (workloads/ssh.py): a real shell, and a
    password field of `*` (no password can match it) instead of useradd's `!`, which sshd without
    PAM reads as a locked account and refuses even for a key."""
    if not isolation_available():
        return agent_identity()
    name = ACCOUNT_PREFIX + secrets.token_hex(6)
    login = ["--shell", _LOGIN_SHELL, "--password", "*"] if ssh_login else ["--shell", _NOLOGIN]
    with _ACCOUNTS_LOCK:
        _passwd_tool(["useradd", "--system", "--user-group", "--no-create-home",
                      "--home-dir", str(home), *login,
                      "--comment", _comment(workload_root), name])
    entry = pwd.getpwnam(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:  # never, but the whole design rests on it
        account_remove(RunAs(name, entry.pw_uid, entry.pw_gid, True))
        raise OSError(f"account {name} came out privileged")
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def account_remove(run_as: RunAs) -> None:
    """Kill whatever still runs as the account, delete what it left in shared temporary folders,
    then delete the account and its group. Files it owned elsewhere must be handed over first
    (`tree_give`): its uid will be given to a later account."""
    if not run_as.switch or not run_as.name.startswith(ACCOUNT_PREFIX):
        return
    processes_kill(run_as.uid)
    for shared in _SHARED_TMP:
        _owned_files_remove(Path(shared), run_as.uid)
    with _ACCOUNTS_LOCK:
        try:
            pwd.getpwnam(run_as.name)
        except KeyError:
            return
        _passwd_tool(["userdel", run_as.name], exists_ok=6)
        try:
            grp.getgrnam(run_as.name)
            _passwd_tool(["groupdel", run_as.name], exists_ok=6)
        except KeyError:
            pass


def accounts_of_root(workload_root: Path) -> list[RunAs]:
    """The accounts this agent (by its workload root) created and has not removed."""
    comment = _comment(workload_root)
    return [RunAs(e.pw_name, e.pw_uid, e.pw_gid, True) for e in pwd.getpwall()
            if e.pw_name.startswith(ACCOUNT_PREFIX) and e.pw_gecos == comment]


def processes_kill(uid: int) -> None:
    """SIGKILL every process of `uid`, including any that left the server's process tree."""
    for _ in range(50):
        victims = [pid for pid in _pids() if _uid_of(pid) == uid]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    log.warning("processes of uid %d kept appearing; giving up killing them", uid)


def dir_for_workload(path: Path, run_as: RunAs, mode: int = 0o700) -> Path:
    """Create `path` (if missing) owned by the workload user with `mode`."""
    path.mkdir(parents=True, exist_ok=True)
    if run_as.switch:
        os.chown(path, run_as.uid, run_as.gid)
    path.chmod(mode)
    return path


def file_for_workload(path: Path, run_as: RunAs) -> None:
    """A file the agent owns that the workload may read but not change (root:<its group> 0640)."""
    if run_as.switch:
        os.chown(path, 0, run_as.gid)
        path.chmod(0o640)


def tree_give(path: Path, run_as: RunAs) -> None:
    """Hand a directory tree over to the workload account `run_as`."""
    if run_as.switch:
        _tree_chown(path, run_as.uid, run_as.gid)


def tree_reclaim(path: Path) -> None:
    """Take a tree back to root while no workload holds it: the account that owned it is about
    to be removed, and its uid may be given to another tenant's account later."""
    if isolation_available() and path.exists():
        _tree_chown(path, 0, 0)


def _tree_chown(path: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, name) for name in dirs + files)]:
            try:
                os.chown(entry, uid, gid, follow_symlinks=False)
            except FileNotFoundError:  # removed while we walked: nothing left to hand over
                pass



def _comment(workload_root: Path) -> str:
    # GECOS may not hold ':' or newlines; a workload root path never needs them.
    return "neocloud workload " + str(workload_root).replace(":", "_").replace("\n", "_")[:200]


def _passwd_tool(argv: list[str], exists_ok: int | None = None) -> None:
    """Run useradd/userdel/groupadd/groupdel; retry while another process holds the passwd lock.
    `exists_ok`: the exit code meaning "already there / already gone", taken as success."""
    binary = shutil.which(argv[0]) or f"/usr/sbin/{argv[0]}"
    for attempt in range(_PASSWD_RETRIES):
        done = subprocess.run([binary, *argv[1:]], capture_output=True, text=True)
        if done.returncode == 0 or done.returncode == exists_ok:
            return
        if done.returncode == 10 or "lock" in done.stderr:  # passwd/group file busy
            time.sleep(0.05 * (attempt + 1))
            continue
        raise OSError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    raise OSError(f"{argv[0]}: the account files stayed locked")


def _owned_files_remove(top: Path, uid: int) -> None:
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != uid:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _uid_of(pid: int) -> int | None:
    """The real uid of a live process (a process cannot drop it to hide); None for one that is
    gone or a zombie: a zombie runs nothing, and only its parent (or init) can reap it, so
    killing it again and again would only wait for that."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            uid = None
            for line in handle:
                if line.startswith("State:") and line.split()[1] == "Z":
                    return None
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
            return uid
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
