"""Screenshots of the core journey's pages on a running portal (`make run`), for reviews:
log-in and not-found pages, storefront, launch form, an instance page and the instance list, the
billing overview, the chargeback and idle-holders pages, SSH keys and a GPU instance with its ssh
command, the reservations calendar, and the operator's inventory, node and reservations pages.

    python -m devtools.screenshots --url http://127.0.0.1:8000 --out /tmp/shots

It logs in with the demo logins `make run` prints, launches one notebook with the form's
defaults (so it also shows whether the defaults launch), waits for it to run, and takes each
page. Nothing here is a test: it records what a person would see.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

DEMO = ("demo@neocloud.localhost", "demo-password-123")
OPERATOR = ("operator@neocloud.localhost", "operator-password-123")


def _log_in(page: Page, url: str, login: tuple[str, str]) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("main input[name=login]", login[0])
    page.fill("main input[name=password]", login[1])
    page.locator("main button[type=submit]").first.click()
    page.get_by_test_id("signed-in-as").wait_for()


def _shot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(800)  # let charts and live partials settle
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"{name}: {page.url}")


def _ssh_journey(page: Page, url: str, out: Path) -> None:
    """Add a fresh key, launch the GPU instances card's default flavor with it, wait for the ssh
    command (the worker and the fleet's agent do the rest)."""
    with tempfile.TemporaryDirectory() as folder:
        key = Path(folder) / "screenshots"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        page.goto(f"{url}/ssh-keys/")
        form = page.get_by_test_id("ssh-key-form")
        form.locator("[name=name]").fill(f"laptop-{int(time.time()) % 100000}")
        form.locator("[name=public_key]").fill(key.with_suffix(".pub").read_text())
        form.get_by_role("button", name="Add key").click()
        page.wait_for_load_state()
    _shot(page, out, "7-ssh-keys")
    page.goto(f"{url}/")
    page.locator("#offering-gpu-instances [data-testid=launch]").click()
    launch = page.get_by_test_id("launch-form")
    launch.wait_for()
    launch.locator("input[name=name]").fill(f"gpu-box-{int(time.time()) % 100000}")
    _shot(page, out, "7-launch-gpu-instance")
    launch.locator("button[type=submit]").first.click()
    page.wait_for_load_state()
    try:
        page.get_by_test_id("ssh-command").wait_for(timeout=90_000)
    except Exception as error:  # noqa: BLE001 - the screenshot shows what happened instead
        print(f"the GPU instance showed no ssh command: {error.__class__.__name__}")
    _shot(page, out, "7-gpu-instance")


def take(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/accounts/login/")
        _shot(page, out, "0-login")
        page.goto(f"{url}/no-such-page/")
        _shot(page, out, "0-not-found")
        _log_in(page, url, DEMO)
        page.goto(f"{url}/")
        _shot(page, out, "1-storefront")
        page.locator("#offering-notebooks [data-testid=launch]").click()
        page.get_by_test_id("launch-form").wait_for()
        _shot(page, out, "2-launch-form")
        form = page.get_by_test_id("launch-form")
        name = form.locator("input[name=name]")
        if not name.input_value():
            name.fill(f"notebook-{int(time.time()) % 100000}")  # the only field a person must type
        form.locator("button[type=submit]").first.click()
        page.wait_for_load_state()
        try:
            page.locator("[data-state=running]").first.wait_for(timeout=90_000)
            page.wait_for_timeout(15_000)  # a few telemetry points for the chart
        except Exception as error:  # noqa: BLE001 - the screenshot shows what happened instead
            print(f"launch with the defaults did not reach running: {error.__class__.__name__}")
        _shot(page, out, "3-instance")
        page.get_by_role("link", name=re.compile("Instances of")).click()
        _shot(page, out, "3-instance-list")
        billing = page.get_by_test_id("nav-billing")
        if billing.count():
            billing.click()
            _shot(page, out, "4-billing-overview")
        chargeback = page.get_by_test_id("nav-chargeback")
        if chargeback.count():
            chargeback.click()
            _shot(page, out, "4-chargeback")
            page.get_by_test_id("tab-idle").click()
            _shot(page, out, "4-chargeback-idle")
        _ssh_journey(page, url, out)
        reservations = page.get_by_test_id("nav-reservations")
        if reservations.count():
            reservations.click()
            _shot(page, out, "8-reservations")
        page.context.clear_cookies()
        _log_in(page, url, OPERATOR)
        page.goto(f"{url}/ops/")
        _shot(page, out, "5-operator-inventory")
        node = page.locator("main a[href*='/ops/nodes/']").first
        if node.count():
            node.click()
        _shot(page, out, "6-operator-node")
        page.goto(f"{url}/ops/reservations/")
        _shot(page, out, "9-operator-reservations")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    take(re.sub(r"/$", "", args.url), args.out)


if __name__ == "__main__":
    main()
