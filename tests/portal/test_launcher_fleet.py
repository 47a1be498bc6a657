"""`make run`'s local fleet (devtools/fleet.py): several node agents, each its own simulated host
with its own address, SSH port range and folders, all registered in us-east-1; Ctrl-C leaves
nothing of any of them. And the fleet variables: a bad value is one line and starts nothing."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.fleet import DEFAULT_FLEET, FleetError, fleet_from_env
from devtools.launcher import DEMO_LOGIN, main
from devtools.processes import free_port
from provisioning.agent.workloads.identity import accounts_of_root
from provisioning.agent.workloads.notebook import workload_root_clear
from tests.support.launcher import demo_notebook_running, output_line_wait, portal_log_in, processes_mentioning

REPO = Path(__file__).resolve().parents[2]


# --- the fleet variables ------------------------------------------------------------------------


def test_by_default_two_simulated_hosts_an_h100_node_and_an_a100_node_with_mig():
    fleet = fleet_from_env({}, gpus_here=False)

    assert [host.simulate for host in fleet] == list(DEFAULT_FLEET)
    assert DEFAULT_FLEET[0] == "8xH100-80GB" and DEFAULT_FLEET[1].startswith("4xA100-80GB,mig=")
    assert [host.address for host in fleet] == ["127.0.1.1", "127.0.1.2"]
    assert [host.ssh_ports for host in fleet] == [(22000, 22099), (22100, 22199)]
    assert [host.hostname for host in fleet] == ["local-simulated-node", "local-simulated-node-2"]
    assert fleet[0].folder(Path("/d")) == Path("/d/agent") and fleet[1].folder(Path("/d")) == Path("/d/agent-2")


def test_on_a_gpu_host_the_first_host_is_the_real_one():
    fleet = fleet_from_env({}, gpus_here=True)
    assert [host.simulate for host in fleet] == [None, DEFAULT_FLEET[1]]
    assert fleet[0].hostname is None  # the agent reports the machine's own name


@pytest.mark.parametrize(
    "environ, specs",
    [
        ({"PORTAL_FLEET_HOSTS": "1"}, ["8xH100-80GB"]),
        ({"PORTAL_FLEET_HOSTS": "3"}, [*DEFAULT_FLEET, "8xH100-80GB"]),
        ({"PORTAL_FLEET": " 2xL40S-48GB "}, ["2xL40S-48GB"]),
        (
            {"PORTAL_FLEET": "8xH100-80GB,mig=1g.10gb*7,4xA100-80GB,mig=3g.40gb+1g.10gb*2,1xH200-141GB"},
            ["8xH100-80GB,mig=1g.10gb*7", "4xA100-80GB,mig=3g.40gb+1g.10gb*2", "1xH200-141GB"],
        ),
        ({"PORTAL_FLEET": "", "PORTAL_FLEET_HOSTS": ""}, list(DEFAULT_FLEET)),
    ],
)
def test_the_fleet_variables_set_the_hosts(environ, specs):
    fleet = fleet_from_env(environ, gpus_here=False)
    assert [host.simulate for host in fleet] == specs
    assert len({host.address for host in fleet}) == len({host.ssh_ports for host in fleet}) == len(fleet)


@pytest.mark.parametrize(
    "environ, says",
    [
        ({"PORTAL_FLEET": "8xH100-80GB", "PORTAL_FLEET_HOSTS": "2"}, "not both"),
        ({"PORTAL_FLEET_HOSTS": "0"}, "from 1 to 16"),
        ({"PORTAL_FLEET_HOSTS": "17"}, "from 1 to 16"),
        ({"PORTAL_FLEET_HOSTS": "two"}, "from 1 to 16"),
        ({"PORTAL_FLEET": "8xH100-80GB;4xA100-80GB"}, "host 1: bad --simulate spec"),
        ({"PORTAL_FLEET": "8xH100-80GB,,4xA100-80GB"}, "'' is not a host"),
        ({"PORTAL_FLEET": "H100"}, "'H100' is not a host"),
        ({"PORTAL_FLEET": "mig=1g.10gb*7,8xH100-80GB"}, "'mig=1g.10gb*7' is not a host"),
        ({"PORTAL_FLEET": "8xH100-80GB,2xV100-16GB"}, "host 2: bad --simulate spec '2xV100-16GB': unknown GPU model"),
        ({"PORTAL_FLEET": "2xL40S-48GB,mig=1g.10gb"}, "L40S-48GB does not support MIG"),
        ({"PORTAL_FLEET": "4xA100-80GB,mig=7g.80gb*2"}, "at most 1 x 7g.80gb"),
        ({"PORTAL_FLEET": "nvml"}, "NVML finds no NVIDIA GPU here"),
        ({"PORTAL_FLEET": ",".join(["1xH100-80GB"] * 17)}, "17 hosts; at most 16"),
    ],
)
def test_a_bad_fleet_value_says_what_is_wrong_in_one_line(environ, says):
    with pytest.raises(FleetError) as refused:
        fleet_from_env(environ, gpus_here=False)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_fleet_value_stops_the_launcher_before_it_starts_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PORTAL_FLEET", "8xH100-80GB,3xB200-192GB")
    monkeypatch.delenv("PORTAL_FLEET_HOSTS", raising=False)

    code = main(["--port", str(free_port())])

    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.splitlines() == [err] and err.startswith("portal: PORTAL_FLEET, host 2:") and "B200" in err
    assert list(tmp_path.iterdir()) == []  # no PostgreSQL, Redis, localstripe, mail folder


# --- a 2-host fleet, started and stopped ----------------------------------------------------------




def _ready_nodes(data: Path, count: int, timeout: float = 60) -> list[tuple]:
    """(hostname, simulated, state, region, address, ssh ports, GPUs, MIG devices) of each node,
    once `count` nodes have registered with their GPUs."""
    import psycopg

    from devtools.embedded import postgres_url

    query = (
        "SELECT n.hostname, n.simulated, n.state, r.code, host(n.address), n.ssh_port_first, n.ssh_port_last,"
        " (SELECT count(*) FROM capacity_gpu g WHERE g.node_id = n.id),"
        " (SELECT count(*) FROM capacity_migdevice m JOIN capacity_gpu g ON g.id = m.gpu_id"
        "   WHERE g.node_id = n.id AND m.present)"
        " FROM capacity_node n JOIN catalog_region r ON r.id = n.region_id ORDER BY n.hostname"
    )
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    with psycopg.connect(postgres_url(data), autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute(query).fetchall()
            if len(rows) == count and all(row[7] for row in rows):
                return rows
            time.sleep(0.3)
    raise AssertionError(f"not {count} nodes with GPUs within {timeout} s: {rows}")




@pytest.mark.integration
def test_a_two_host_fleet_registers_two_nodes_and_ctrl_c_leaves_nothing_of_either():
    # Under the test run's data folder, not pytest's tmp (see tests/portal/test_launcher.py).
    data = Path(os.environ["PORTAL_DATA_DIR"]) / f"launcher-fleet-{os.getpid()}"
    shutil.rmtree(data, ignore_errors=True)
    # Host 2's GPUs are all MIG: a whole-GPU notebook can only run on host 1, a MIG one only on
    # host 2, so each agent has a notebook server of an instance to leave behind.
    fleet_spec = "8xH100-80GB,2xH100-80GB,mig=1g.10gb*7"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORTAL_EMAIL_DIR",
                                                            "STRIPE_API_BASE", "PORTAL_FLEET_HOSTS"}}
    # No pool: a stopping agent stops its pooled servers itself; an instance's server it leaves.
    env.update(PORTAL_DATA_DIR=str(data), PYTHONUNBUFFERED="1", PORTAL_FLEET=fleet_spec, PORTAL_NOTEBOOK_POOL="0")
    env.pop("PORTAL_DB_POOL_MAX_SIZE", None)
    fleet = fleet_from_env(env, gpus_here=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.launcher", "--port", str(free_port())],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    children: list[psutil.Process] = []
    try:
        # Given the launcher up with a 2-host fleet, which it lists
        url = output_line_wait(process, r"portal is up: (http://\S+)/", 240, seen).group(1)
        output_line_wait(process, r"Fleet: +2 host\(s\) in us-east-1", 5, seen)
        for line in ("local-simulated-node at 127.0.1.1, SSH ports 22000-22099: SIMULATED 8xH100-80GB",
                     "local-simulated-node-2 at 127.0.1.2, SSH ports 22100-22199: SIMULATED 2xH100-80GB,mig="):
            output_line_wait(process, re.escape(line), 5, seen)
        launched = psutil.Process(process.pid).children()
        agents = [c for c in launched if "provisioning.agent.main" in " ".join(c.cmdline())]
        assert len(agents) == 2

        # Then two ready, simulated nodes in us-east-1, each with its GPUs, address and SSH ports
        assert _ready_nodes(data, 2) == [
            ("local-simulated-node", True, "ready", "us-east-1", "127.0.1.1", 22000, 22099, 8, 0),
            ("local-simulated-node-2", True, "ready", "us-east-1", "127.0.1.2", 22100, 22199, 2, 14),
        ]

        # And a notebook runs on each host
        with httpx.Client(base_url=url, timeout=30) as client:
            portal_log_in(client, *DEMO_LOGIN)
            whole = demo_notebook_running(client, flavor="notebooks/notebook-1x-h100", name="notebook-1x-h100")
            mig = demo_notebook_running(client, flavor="notebooks/notebook-mig-1g-10gb", name="notebook-mig-1g-10gb")
        assert (whole["node"], mig["node"]) == ("local-simulated-node", "local-simulated-node-2")
        for host in fleet:
            workloads = processes_mentioning(f"{host.folder(data)}/workloads/")
            assert any("jupyter" in " ".join(p.cmdline()) for p in workloads)
        children = psutil.Process(process.pid).children(recursive=True)

        # When the launcher gets SIGINT
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 0

        # Then nothing of either agent remains: agents, notebook servers, their accounts
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [(p.pid, p.name()) for p in alive]
        assert not processes_mentioning(str(data))
        for host in fleet:
            assert accounts_of_root(host.folder(data) / "workloads") == []
    finally:
        if process.poll() is None:
            process.kill()
        for proc in [*children, *processes_mentioning(str(data))]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        for host in fleet:  # after a failure, the accounts of notebooks left running
            workload_root_clear(host.folder(data) / "workloads")
        shutil.rmtree(data, ignore_errors=True)
