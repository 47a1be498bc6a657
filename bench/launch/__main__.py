"""The command: `python -m bench.launch [--launches 20] [--pool 2] [--cold 5] [--bare 5]
[--fix-channel-timeout]` (what it measures: the package's doc and bench/README.md)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .config import REGION, REPO, SIMULATE, BenchError
from .measure import CpuMeter, client_login
from .phases import Results, cold_phase_run, pooled_phase_run
from .processes import Stack
from .report import loadavg, results_print
from .startup import accounts_create, agent_start, database_prepare, portal_start


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    print("Launch benchmark: click-to-ready of a 1× H100 notebook through nginx → portal → agent → JupyterLab")
    print(f"load average at start: {loadavg()}   ({os.cpu_count()} CPUs)", flush=True)
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    work = Path(os.environ["PORTAL_DATA_DIR"]).resolve() / "launch"
    shutil.rmtree(work, ignore_errors=True)
    stack = Stack(work=work, logs=work / "logs")
    stack.work.mkdir(parents=True)
    stack.workload_root = Path(tempfile.mkdtemp(prefix="bench-launch-workloads-"))

    # SIGTERM stops everything this run started, as Ctrl-C does.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        print("Setting up: embedded PostgreSQL/Redis, database bench_launch, migrate, demo catalog …", flush=True)
        env = database_prepare()
        email, password, org = accounts_create()
        from apps.capacity.services.nodes import registration_token_create
        from apps.catalog.models import Region

        _, token = registration_token_create(region=Region.objects.get(code=REGION), actor=None, note="bench.launch")
        print(
            "Starting uvicorn, nginx front proxy, Celery worker (prefork ×2) and beat"
            + (" (web with --fix-channel-timeout)" if args.fix_channel_timeout else "")
            + " …",
            flush=True,
        )
        portal_url = portal_start(stack=stack, env=env, channel_fix=args.fix_channel_timeout)
        print(f"Starting one agent: --simulate {SIMULATE} (SIMULATED GPUs), --notebook-pool {args.pool} …", flush=True)
        agent = agent_start(stack=stack, portal_url=portal_url, pool=args.pool, token=token, name="agent-pooled")
        client = client_login(base=portal_url, email=email, password=password)
        cpu = CpuMeter(stack)
        setup_s = time.monotonic() - began

        results = Results()
        if args.pool > 0 and args.launches > 0:
            pooled_phase_run(
                results=results, client=client, org=org, agent=agent, cpu=cpu, launches=args.launches, pool=args.pool
            )
        if args.cold > 0 or args.bare > 0:
            agent = cold_phase_run(
                results=results,
                stack=stack,
                client=client,
                org=org,
                agent=agent,
                portal_url=portal_url,
                cpu=cpu,
                cold=args.cold,
                bare=args.bare,
            )
        results_print(
            results=results,
            stack=stack,
            pool=args.pool,
            fix_channel_timeout=args.fix_channel_timeout,
            setup_s=setup_s,
            began=began,
        )
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stack.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch", description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("--launches", type=int, default=20, help="pooled launches (default %(default)s)")
    parser.add_argument("--pool", type=int, default=2, help="warm pool size for the pooled phase")
    parser.add_argument("--cold", type=int, default=5, help="cold launches, agent with --notebook-pool 0")
    parser.add_argument("--bare", type=int, default=5, help="bare Jupyter starts of each kind (baseline)")
    parser.add_argument(
        "--fix-channel-timeout",
        action="store_true",
        help="run the web process with the channel layer's Redis socket timeout off "
        "(a workaround for the long-poll's HTTP 500s; see bench/README.md)",
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench.launch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
