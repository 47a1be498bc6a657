"""Starts localstripe (with devtools/localstripe_plus.py's additions) for development and
tests, when no STRIPE_API_BASE is configured. Production sets real Stripe keys and never calls this."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .embedded import EmbeddedServiceError
from .processes import REPO, free_port

WEBHOOK_PATH = "/billing/stripe/webhook/"


@dataclass
class LocalStripe:
    api_base: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _answers(api_base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_base}/js.stripe.com/v3/", timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def localstripe_start(root: Path, *, keep_store: bool) -> LocalStripe:
    """Start a localstripe on a free loopback port. With `keep_store`, customers, cards and
    invoices survive a restart of the portal (the run command); tests start empty."""
    folder = root / "localstripe"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "devtools.localstripe_plus", "--port", str(port)]
    if keep_store:
        argv += ["--store", str(folder / "store.pickle")]
    log = open(folder / "localstripe.log", "ab")
    # From the repository: devtools is not installed, so `-m devtools…` needs it on the path.
    process = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api_base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _answers(api_base):
            return LocalStripe(api_base=api_base, process=process)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    tail = (folder / "localstripe.log").read_text(errors="replace")[-500:]
    raise EmbeddedServiceError(f"localstripe did not start: {tail.strip().splitlines()[-1:]}")


def localstripe_webhook_register(*, api_base: str, portal_url: str, secret: str) -> None:
    """Point localstripe's event deliveries at the portal, signed with `secret` as Stripe signs."""
    body = json.dumps({"url": portal_url.rstrip("/") + WEBHOOK_PATH, "secret": secret}).encode()
    request = urllib.request.Request(
        f"{api_base}/_config/webhooks/portal", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def localstripe_outage(*, api_base: str, count: int, when: str = "before") -> None:
    """Make the next `count` Stripe API requests fail with 503 (see localstripe_plus)."""
    body = json.dumps({"count": count, "when": when}).encode()
    request = urllib.request.Request(
        f"{api_base}/_config/outage", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass
