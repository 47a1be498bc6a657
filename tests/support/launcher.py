"""Helpers of the tests that run `make run`'s launcher as a real process and read what it prints."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
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
    # Celery's per-task lines (a beat every second) would push everything else out of the tail.
    told = [line for line in seen if "Task " not in line and "Sending due task" not in line]
    raise AssertionError(f"no line matching {pattern!r}; output without task lines:\n{''.join(told[-60:])}")


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


def portal_log_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    """Log in through the real form; later unsafe requests of `client` carry the CSRF token."""
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/accounts/login/", data={"csrfmiddlewaretoken": token, "login": email, "password": password}
    )
    client.headers.update({"X-CSRFToken": client.cookies["csrftoken"], "Referer": str(client.base_url)})
    return response


def demo_notebook_running(client: httpx.Client, *, flavor: str, name: str, timeout: float = 120) -> dict:
    """Launch a notebook of `flavor` for the demo user in Acme AI; its details once it runs."""
    orgs = client.get("/api/v1/organizations/").json()["results"]
    slug = next(o["slug"] for o in orgs if o["name"] == "Acme AI")
    launched = client.post(f"/api/v1/organizations/{slug}/instances/", json={
        "flavor": flavor, "image": "jupyterlab-4-host", "region": "us-east-1", "name": name})
    assert launched.status_code == 201, launched.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = client.get(f"/api/v1/organizations/{slug}/instances/{launched.json()['id']}/").json()
        if detail["state"] in ("running", "failed"):
            break
        time.sleep(0.3)
    assert detail["state"] == "running", detail
    return detail
