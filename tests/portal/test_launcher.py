"""The run command (`make run` → devtools.launcher) brings the whole portal up on a fresh
data folder, serves the storefront and the demo login, and Ctrl-C stops every process."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.launcher import DEMO_LOGIN, main
from devtools.processes import free_port
from tests.support.launcher import demo_notebook_running, output_line_wait, portal_log_in

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_a_busy_port_gets_one_line_and_starts_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["--port", str(busy.getsockname()[1])])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "already in use" in err
    assert not (tmp_path / "postgres").exists()




def _notebook_runs(client: httpx.Client, timeout: float = 90) -> dict:
    """Launch the demo user's notebook in Acme AI and wait until its Jupyter answers."""
    detail = demo_notebook_running(client, flavor="notebooks/notebook-1x-h100", name="launcher-check",
                                   timeout=timeout)
    status = client.get(detail["notebook_url"].removesuffix("lab") + "api/status")
    assert status.status_code == 200
    return detail


def _local_node(data_dir: Path, timeout: float = 30):
    """The node the launcher's local agent registered (simulated: CI machines have no GPU)."""
    import psycopg

    from devtools.embedded import postgres_url

    deadline = time.monotonic() + timeout
    with psycopg.connect(postgres_url(data_dir)) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT n.hostname, n.simulated, count(g.id) FROM capacity_node n "
                "JOIN capacity_gpu g ON g.node_id = n.id GROUP BY n.id"
            ).fetchone()
            if row:
                return row
            time.sleep(0.3)
    return None


def test_run_command_serves_the_portal_and_ctrl_c_stops_everything():
    # Its own data folder under the test run's, not pytest's tmp_path: a concurrent pytest run
    # makes /tmp/pytest-of-<user> private again, and the embedded PostgreSQL's account and the
    # notebooks' accounts must pass through every folder above theirs.
    tmp_path = Path(tempfile.mkdtemp(prefix="launcher-", dir=os.environ["PORTAL_DATA_DIR"]))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORTAL_EMAIL_DIR",
                                                            "PORTAL_FLEET"}}
    # One host, the single local node of before fleets (test_launcher_fleet.py starts two).
    env.update(PORTAL_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1", PORTAL_FLEET_HOSTS="1")
    env.pop("PORTAL_DB_POOL_MAX_SIZE", None)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.launcher", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        url = output_line_wait(process, r"portal is up: (http://\S+)/", 180, seen).group(1)
        output_line_wait(process, re.escape(DEMO_LOGIN[0]), 5, seen)
        children = psutil.Process(process.pid).children(recursive=True)
        # The settings start nothing, so every portal process must be handed the servers.
        portal_processes = {
            name: child
            for child in psutil.Process(process.pid).children()
            for name in ("uvicorn", "worker", "beat", "provisioning.agent.main")
            if name in " ".join(child.cmdline())
        }
        assert set(portal_processes) == {"uvicorn", "worker", "beat", "provisioning.agent.main"}
        for name, child in portal_processes.items():
            environ = child.environ()
            assert environ.get("DATABASE_URL", "").startswith("postgresql://"), name
            assert environ.get("REDIS_URL", "").startswith("redis://127.0.0.1:"), name
            assert environ.get("STRIPE_API_BASE", "").startswith("http://127.0.0.1:"), name

        storefront = httpx.get(f"{url}/")
        assert storefront.status_code == 200 and "H100" in storefront.text
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
        assert _local_node(tmp_path / "data") == ("local-simulated-node", True, 8)
        with httpx.Client(base_url=url, timeout=30) as client:
            login = portal_log_in(client, *DEMO_LOGIN)
            assert login.status_code == 302 and login.headers["location"].endswith("/dashboard/")
            # A notebook launched on the run command's own pieces: worker, agent, JupyterLab, nginx.
            _notebook_runs(client)

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.info for p in alive]
        assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
        for proc in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
                proc.kill()
        shutil.rmtree(tmp_path, ignore_errors=True)
