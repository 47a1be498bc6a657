"""Process facts from /proc and stopping a whole process tree (Linux).

Jupyter starts each kernel in a session of its own, so signalling the server's process group
does not reach the kernels; we collect the server's descendants first and signal their groups too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

STOP_GRACE_S = 5.0


def proc_stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, start time in clock ticks) of `pid`, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in (...) may itself hold spaces or parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), fields[19]


def proc_start_time(pid: int) -> str | None:
    facts = proc_stat(pid)
    return facts[2] if facts else None


def proc_alive(pid: int, start_time: str | None = None) -> bool:
    """True while `pid` runs (not a zombie) and, given `start_time`, is still the same process."""
    facts = proc_stat(pid)
    if facts is None or facts[0] in ("Z", "X"):
        return False
    return start_time is None or facts[2] == start_time


def proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])  # effective uid
    except FileNotFoundError:
        return None
    return None


def proc_descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            facts = proc_stat(int(entry))
            if facts:
                children.setdefault(facts[1], []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def proc_with_arg(arg: str) -> list[int]:
    """Processes whose command line has exactly `arg` (finds a server whose record was lost)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if arg.encode() in argv:
                found.append(int(entry))
    return found


def tree_stop(pid: int, process: subprocess.Popen | None = None,
              grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of `pid` (a session leader), wait up to `grace_s`, SIGKILL.

    Whatever of its descendants (kernels, their children) is still alive then is killed too.
    `process` is our Popen of it, when we started it in this run (so we reap it).
    """
    descendants = proc_descendants(pid)
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid, process):
        time.sleep(0.05)
    for member in [pid, *descendants]:
        if proc_alive(member):
            _signal_group(member, signal.SIGKILL)
            _signal(member, signal.SIGKILL)
    if process is not None:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(proc_alive(m) for m in [pid, *descendants]):
        time.sleep(0.02)


def _alive(pid: int, process: subprocess.Popen | None) -> bool:
    if process is not None:
        return process.poll() is None
    return proc_alive(pid)


def _signal_group(pid: int, signum: int) -> None:
    try:
        group = os.getpgid(pid)
        if group != os.getpgid(0):  # never our own group (the agent's)
            os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
