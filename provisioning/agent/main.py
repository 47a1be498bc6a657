"""Command line of the node agent (`neocloud-agent`, or `python -m provisioning.agent.main`).

    neocloud-agent --portal https://portal.example --token <one-time token>     # first start
    neocloud-agent --portal https://portal.example                              # later starts
    neocloud-agent --portal http://127.0.0.1:8000 --simulate 8xH100-80GB --hostname sim-01 \\
        --state-file /tmp/sim-01.json --token <token>                         # no GPUs here
    neocloud-agent --portal http://127.0.0.1:8000 --simulate 4xA100-80GB --hostname sim-02 \
        --address 127.0.1.2 --ssh-ports 22100-22199 --state-file /tmp/sim-02.json  # a 2nd host
    neocloud-agent --capture /tmp/nvml-capture        # on a GPU host: write a test fixture
    neocloud-agent --portal https://portal.example --notebook-pool 2 \\
        --workload-root /var/lib/neocloud/workloads                            # notebooks

Without --simulate the agent reads real NVML and refuses to start where NVML is unavailable; it
never falls back to simulated GPUs on its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import ssh_ports_parse
from .client import DEFAULT_STATE_FILE, PortalClient
from .loop import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    AgentRun,
    Sources,
    agent_run,
    sources_real,
    sources_simulated,
)

if TYPE_CHECKING:
    from .workloads.service import WorkloadService

log = logging.getLogger("neocloud.agent")

CAPTURE_FILE = "nvml_capture.json"


def main(argv: list[str] | None = None) -> int:
    args = _arguments_parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.capture:
        return capture_write(Path(args.capture), hostname=args.hostname, disk_path=args.disk_path)
    if not args.portal:
        print("neocloud-agent: --portal URL is required (or --capture DIR)", file=sys.stderr)
        return EXIT_USAGE

    if args.simulate:
        try:
            sources = sources_simulated(args.simulate, args.hostname, args.disk_path,
                                        address=args.address, ssh_ports=args.ssh_ports)
        except ValueError as exc:
            print(f"neocloud-agent: {exc}", file=sys.stderr)
            return EXIT_USAGE
        log.warning("SIMULATED GPUs (%s): for development and scale tests only", args.simulate)
        return _run(args, sources)

    from .nvml import nvml_session, nvml_unavailable_reason

    reason = nvml_unavailable_reason()
    if reason:
        print(f"neocloud-agent: NVML is unavailable on this host ({reason}); "
              "use --simulate SPEC for a simulated node", file=sys.stderr)
        return EXIT_ERROR
    # One NVML session for the whole run makes each periodic read cheap.
    with nvml_session():
        return _run(args, sources_real(args.hostname, args.disk_path, address=args.address,
                                       ssh_ports=args.ssh_ports))


def _run(args: argparse.Namespace, sources: Sources) -> int:
    stop = threading.Event()
    workloads = None
    if not args.once:  # --once only registers and reports: it runs no workloads
        workloads = _workloads(args)
        if workloads is None:
            return EXIT_USAGE
    run = AgentRun(
        client=PortalClient(args.portal, stop=stop),
        sources=sources,
        state_path=Path(args.state_file).expanduser(),
        token=args.token or os.environ.get("NEOCLOUD_AGENT_TOKEN"),
        telemetry_interval_s=args.telemetry_interval,
        health_interval_s=args.health_interval,
        stop=stop,
        workloads=workloads,
    )
    previous = _stop_on_signals(stop)
    try:
        return agent_run(run, once=args.once)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _workloads(args: argparse.Namespace) -> WorkloadService | None:
    """The notebook side, checked and prepared; None (after saying why) when the flags are bad."""
    from .workloads.service import WorkloadOptions, WorkloadService

    state_dir = Path(args.state_file).expanduser().parent
    if not args.workload_root:
        # Made here first, so it gets the private mode state_save would give it.
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = Path(args.workload_root) if args.workload_root else state_dir / "workloads"
    service = WorkloadService(WorkloadOptions(
        workload_root=root.expanduser().absolute(), proxy_group=args.proxy_group,
        pool_size=args.notebook_pool,
        start_timeout_s=args.notebook_start_timeout,
        address=args.address, ssh_ports=args.ssh_ports,
    ))
    try:
        service.prepare()
    except (ValueError, OSError) as exc:
        print(f"neocloud-agent: {exc}", file=sys.stderr)
        return None
    return service


def _stop_on_signals(stop: threading.Event) -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals can only be handled in the main thread (e.g. main() under a test)

    def handler(signum, _frame):
        log.info("%s received", signal.Signals(signum).name)
        stop.set()

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def capture_write(directory: Path, *, hostname: str | None = None, disk_path: str = "/") -> int:
    """Read real NVML once and write raw reads + parsed payloads as JSON, for a test fixture."""
    from .host import host_facts_read
    from .inventory import inventory_from_nvml, telemetry_from_nvml
    from .nvml import (
        nvml_inventory_read,
        nvml_session,
        nvml_telemetry_read,
        nvml_unavailable_reason,
    )

    reason = nvml_unavailable_reason()
    if reason:
        print(f"neocloud-agent: cannot capture, NVML is unavailable here ({reason})",
              file=sys.stderr)
        return EXIT_ERROR
    with nvml_session():
        inventory_raw = nvml_inventory_read()
        telemetry_raw = nvml_telemetry_read()
    host = host_facts_read(hostname, disk_path)
    inventory = inventory_from_nvml(inventory_raw, host).to_payload()
    telemetry = telemetry_from_nvml(telemetry_raw).to_payload()
    capture = {
        "source": f"captured by `neocloud-agent --capture` on {host['hostname']} "
                  f"at {inventory_raw['read_at']}",
        "host": host,
        "inventory_raw": inventory_raw,
        "telemetry_raw": telemetry_raw,
        "inventory_payload": inventory,
        "telemetry_payload": telemetry,
    }
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "nvml_inventory_raw.json": inventory_raw,
        "nvml_telemetry_raw.json": telemetry_raw,
        "inventory_payload.json": inventory,
        "telemetry_payload.json": telemetry,
        CAPTURE_FILE: capture,
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")

    print(f"driver {inventory['driver_version']}, CUDA {inventory['cuda_version']}, "
          f"NVML {inventory_raw['nvml_version']}, {len(inventory['gpus'])} GPU(s)")
    for gpu in inventory["gpus"]:
        mig = {None: "no MIG", False: "MIG off", True: "MIG on"}[gpu["mig_mode_current"]]
        memory = f"{gpu['memory_bytes'] / 2**30:.1f} GiB" if gpu["memory_bytes"] else "? GiB"
        print(f"  GPU{gpu['index']} {gpu['name']} {gpu['uuid']} {memory} {mig} "
              f"({len(gpu['mig_devices'])} MIG devices) health={gpu['health']}"
              + (f" {gpu['health_reasons']}" if gpu["health_reasons"] else ""))
    errors = {g["index"]: g["errors"] for g in inventory_raw["gpus"] if g.get("errors")}
    if errors or inventory_raw["errors"]:
        print(f"  NVML field errors: {inventory_raw['errors'] or ''} {errors}")
    print(f"wrote {', '.join(files)} to {directory}")
    print(f"commit {directory / CAPTURE_FILE} as tests/agent/fixtures/nvml_<gpu>_capture.json")
    return EXIT_OK


def _arguments_parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="neocloud-agent",
        description="Neocloud node agent: reports this GPU host to the portal and runs its "
        "notebook workloads.",
    )
    parser.add_argument("--portal", help="portal base URL, e.g. https://portal.example")
    parser.add_argument("--token", help="one-time registration token (first start only; "
                        "or env NEOCLOUD_AGENT_TOKEN)")
    parser.add_argument("--state-file", default=str(DEFAULT_STATE_FILE),
                        help="where node id and credential are kept (default %(default)s)")
    parser.add_argument("--simulate", metavar="SPEC",
                        help="report SIMULATED GPUs, e.g. 8xH100-80GB, 4xH200-141GB, "
                        "8xA100-80GB, 2xL40S-48GB, 8xH100-80GB,mig=1g.10gb*7")
    parser.add_argument("--hostname", help="report this hostname (several simulated agents on "
                        "one machine need different ones)")
    parser.add_argument("--disk-path", default="/", help="path whose disk size is reported")
    parser.add_argument("--address", type=_local_address, metavar="IP",
                        help="the address this node's services (SSH instances) are reached at, "
                        "reported to the portal; must be one of this host's own (several "
                        "simulated agents on one machine take 127.0.1.1, 127.0.1.2, ...)")
    parser.add_argument("--ssh-ports", type=_ssh_ports, metavar="FIRST-LAST",
                        help="the port range this node's SSH instances may listen on, e.g. "
                        "22000-22099, reported to the portal")
    parser.add_argument("--telemetry-interval", type=_positive_float, default=10.0,
                        metavar="SECONDS", help="seconds between telemetry reports")
    parser.add_argument("--health-interval", type=_positive_float, default=600.0,
                        metavar="SECONDS", help="seconds between node health checks (NVML "
                        "health, and a verified CUDA matrix multiply where torch and CUDA "
                        "exist); one always runs at start and goes with the registration")
    parser.add_argument("--once", action="store_true",
                        help="register or resume, send one heartbeat and telemetry, exit "
                        "(runs no workloads)")
    parser.add_argument("--notebook-pool", type=_count, default=0, metavar="N",
                        help="keep N unassigned JupyterLab servers warm for instant hand-out "
                        "(default 0: off)")
    parser.add_argument("--workload-root", metavar="DIR",
                        help="where notebook working directories and server slots live "
                        "(default: 'workloads' next to the state file)")
    parser.add_argument("--proxy-group", default="neocloud-proxy", metavar="GROUP",
                        help="the front proxy's group: the only one, besides a notebook's own "
                        "account, that may connect to its socket (created when missing; "
                        "default %(default)s). A root agent runs every notebook server as an "
                        "account of its own; a non-root agent runs them as itself (no isolation)")
    parser.add_argument("--notebook-start-timeout", type=_positive_float, default=60.0,
                        metavar="SECONDS", help="a cold start not answering by then has failed "
                        "(default %(default)s)")
    parser.add_argument("--capture", metavar="DIR",
                        help="write real NVML reads and payloads as JSON into DIR, then exit")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.capture and args.simulate:
        parser.error("--capture reads real NVML; it cannot be combined with --simulate")
    return args


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _local_address(text: str) -> str:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    # Reported only if something here can listen on it: a portal must never be told an address
    # that is not this host's (any 127.x.y.z is, on Linux: the whole 127/8 is loopback).
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{address} is not an address of this host "
                                             f"({exc.strerror})") from None
    return str(address)


def _ssh_ports(text: str) -> tuple[int, int]:
    try:
        return ssh_ports_parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


if __name__ == "__main__":
    sys.exit(main())
