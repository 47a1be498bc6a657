"""Helpers of the tests that run `make run`'s launcher as a real process and read what it prints."""

from __future__ import annotations

import re
import subprocess
import time

import psutil


def output_line_wait(process: subprocess.Popen, pattern: str, timeout: float, seen: list[str]) -> re.Match:
    """The first line `process` prints that matches `pattern`; every line read goes to `seen`,
    whose tail the failure shows."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if match := regex.search(line):
            return match
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)[-4000:]}")


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Processes with `text` in their command line or working folder (redis runs in its data folder)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if text in " ".join(proc.info["cmdline"] or []) or text in (proc.info["cwd"] or ""):
                found.append(proc)
        except psutil.Error:
            pass
    return found
