"""A GPU instance over SSH in headless Chromium against the real portal, worker, beat and a node
agent running a real sshd: the user adds an SSH key made with ssh-keygen, launches a GPU instance
from the storefront choosing that key, sees the ssh command appear live when it is ready, and that
very command (with the known_hosts line the page shows) logs in with the real OpenSSH client."""

import re
import signal
import subprocess
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.capacity.models import Gpu, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Flavor, Region
from apps.instances.models import Instance
from tests.browser.conftest import log_in
from tests.factories.accounts import PASSWORD, OrganizationFactory, UserFactory
from tests.support.processes import agent_start
from tests.support.ssh import NEEDS_ROOT_AND_OPENSSH
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    *NEEDS_ROOT_AND_OPENSSH,
]
NODE = "ssh-browser-node"
PORTS = (42380, 42389)  # apart from the other SSH tests' ranges
COMMAND = re.compile(r"^ssh -p (\d+) ([a-z0-9_-]+)@([0-9a-f.:]+)$")


def test_add_a_key_launch_a_gpu_instance_see_ssh_live_and_log_in(
    live_portal, celery_worker, celery_beat, browser_context, transactional_db, demo_catalog, tmp_path, process_logs
):
    base = live_portal.url
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs, portal_url=base, name=NODE, state_file=tmp_path / "state.json", token=token,
        address="127.0.0.1", ssh_ports=PORTS,
    )  # fmt: skip
    try:
        wait_until(lambda: Gpu.objects.filter(node__hostname=NODE, node__state=NodeState.READY).count() == 8)
        user = UserFactory()
        OrganizationFactory(owner=user, name="Tensor Works", credits=Decimal("100.00"))
        private = tmp_path / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f", str(private)], check=True
        )
        fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(private.with_suffix(".pub"))], capture_output=True, text=True, check=True
        ).stdout.split()[1]
        page = browser_context.new_page()
        log_in(page, base, user.email, PASSWORD)

        # Given the user adds their public key on the SSH keys page
        page.goto(f"{base}/ssh-keys/")
        form = page.get_by_test_id("ssh-key-form")
        form.locator("[name=name]").fill("laptop")
        form.locator("[name=public_key]").fill(private.with_suffix(".pub").read_text())
        form.get_by_role("button", name="Add key").click()
        expect(page.locator("main")).to_contain_text(fingerprint)

        # When they launch a GPU instance from the storefront, choosing that key
        page.goto(f"{base}/")
        page.locator("#offering-gpu-instances [data-testid=launch]").click()
        launch = page.get_by_test_id("launch-form")
        gpu_flavor = str(Flavor.objects.get(offering__slug="gpu-instances", slug="1x-h100").pk)
        launch.locator("select[name=flavor]").select_option(gpu_flavor)
        key = launch.get_by_test_id("ssh-key-choice").filter(has_text=fingerprint)
        expect(key).to_contain_text("laptop")
        key.locator("input").check()  # the only key is ticked already; ticking it again changes nothing
        launch.locator("select[name=region]").select_option("us-east-1")
        launch.locator("input[name=name]").fill("gpu-box")
        # (The worker is paused until the instance page is open, so that the page surely sees the
        # instance before it is ready: what follows then can only arrive over the websocket.)
        worker = celery_worker.current.process
        worker.send_signal(signal.SIGSTOP)
        try:
            launch.get_by_role("button", name="Launch").click()
            detail = page.locator("#instance-detail")
            expect(detail).to_have_attribute("data-state", "requested")
            expect(page.get_by_test_id("ssh-command")).to_have_count(0)
            page.evaluate("window.__noReload = true")
        finally:
            worker.send_signal(signal.SIGCONT)

        # Then the instance page shows the ssh command live, with no reload, once it is ready
        expect(detail).to_have_attribute("data-state", "running", timeout=90_000)
        command = page.get_by_test_id("ssh-command")
        expect(command).to_be_visible()
        assert page.evaluate("window.__noReload") is True
        instance = Instance.objects.get(name="gpu-box")
        assert instance.offering.kind == "gpu_slice" and len(instance.ssh_authorized_keys) == 1

        # And that exact command, with the page's known_hosts line, logs in with the private key
        port, login, host = COMMAND.match(command.inner_text().strip()).groups()
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(page.get_by_test_id("ssh-known-hosts").inner_text().strip() + "\n")
        done = subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(private), "-p", port,
             "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
             f"{login}@{host}", 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"'],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        visible = re.search(r"^CUDA_VISIBLE_DEVICES=(\S+)$", done.stdout, re.M)
        assert visible and visible.group(1).startswith("GPU-") and "," not in visible.group(1), done.stdout

        # When they stop it, the command goes from the page, live
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#instance-detail")).to_have_attribute("data-state", "stopped", timeout=30_000)
        expect(page.get_by_test_id("ssh-command")).to_have_count(0)
    finally:
        agent.stop()
