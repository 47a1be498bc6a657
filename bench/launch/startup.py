"""Start-up: the embedded services and a fresh database, the bench user, the portal's processes
(web, front proxy, Celery worker and beat) and the node agent.

Every command line comes from devtools/commands.py, the one place that says how each process
starts, so the benchmark measures what `make run` and production run.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal

from devtools.commands import agent_command, beat_command, web_command, worker_command
from devtools.processes import free_port

from .config import DATABASE, HOSTNAME, REPO, SIMULATE, BenchError
from .processes import Child, Stack, condition_wait, http_ok


def database_prepare() -> dict[str, str]:
    """Embedded PostgreSQL and Redis, a fresh `bench_launch` database, migrated; Django set up.
    Returns the environment the portal's processes run with."""
    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    from devtools.embedded import data_dir, postgres_url, redis_start

    root = data_dir()
    import psycopg

    with psycopg.connect(postgres_url(root, database="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')  # a clean slate each run
    os.environ["DATABASE_URL"] = postgres_url(root, database=DATABASE)
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = redis_start(root).url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    # Our own key prefixes on a Redis other benchmarks may share.
    os.environ.setdefault("PORTAL_CHANNEL_PREFIX", "bench-launch")
    os.environ.setdefault("PORTAL_CACHE_PREFIX", "bench-launch")
    os.environ.setdefault("PORTAL_PROXY_SECRET", secrets.token_urlsafe(32))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the portal's logging config says INFO
    import redis as redis_client

    # Tasks a killed earlier run left in the broker would only find instances that are gone.
    broker = redis_client.Redis.from_url(f"{os.environ['REDIS_URL'].rstrip('/')}/0")
    broker.delete("celery", "unacked", "unacked_index")
    return {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}


def accounts_create() -> tuple[str, str, str]:
    """A verified user with a password (production hasher) and an organization it owns.
    Returns (email, password, organization slug)."""
    from allauth.account.models import EmailAddress

    from apps.accounts.models import OrganizationKind, User
    from apps.accounts.services import organization_create
    from apps.billing.models import CreditKind
    from apps.billing.services.accounts import billing_account_get_or_create
    from apps.billing.services.credits import credit_grant_create
    from apps.catalog.demo import catalog_demo_load

    catalog_demo_load()
    email, password = "bench-launch@example.test", secrets.token_urlsafe(18)
    user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    organization = organization_create(user=user, name="Bench Launch", kind=OrganizationKind.COMPANY)
    # Launches need a card, credits or invoice terms; credits keep Stripe out of the measurement.
    account = billing_account_get_or_create(organization=organization)
    credit_grant_create(account=account, kind=CreditKind.PROMOTION, amount=Decimal("1000.00"), description="bench")
    return email, password, organization.slug


# --fix-channel-timeout: the web process runs uvicorn with the channel layer's Redis connections
# made without a socket timeout (redis-py < 8 behaviour), so that channels_redis's 5 s blocking
# BZPOPMIN is not cut off by redis-py 8's 5 s default socket timeout. See bench/README.md.
_CHANNEL_TIMEOUT_FIX = """
import runpy, sys
import channels_redis.core as core
def create_pool(self, index):
    return core.create_pool({**self.hosts[index], "socket_timeout": None})
core.RedisChannelLayer.create_pool = create_pool
sys.argv = ["uvicorn", *sys.argv[1:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def _web_command_with_channel_fix(command: list[str]) -> list[str]:
    """web_command's uvicorn run through the patch above: `python -m uvicorn ARGS` becomes
    `python -c FIX ARGS`, which sets sys.argv back to `uvicorn ARGS` before running it."""
    if command[1:3] != ["-m", "uvicorn"]:
        raise BenchError(f"--fix-channel-timeout expects the web command to run uvicorn: {command[:3]}")
    return [command[0], "-c", _CHANNEL_TIMEOUT_FIX, *command[3:]]


def portal_start(*, stack: Stack, env: dict[str, str], channel_fix: bool) -> str:
    """uvicorn, the nginx front proxy, a Celery worker (prefork ×2) and beat, as `make run` starts
    them; returns the proxy's URL once all four are up."""
    from devtools.proxy import front_proxy_start

    web_port, proxy_port = free_port(), free_port()
    url = f"http://127.0.0.1:{proxy_port}"
    env["PORTAL_BASE_URL"] = url
    command = web_command(port=web_port)
    web = stack.spawn("web", _web_command_with_channel_fix(command) if channel_fix else command, env)
    worker = stack.spawn("worker", worker_command(concurrency=2), env)
    beat = stack.spawn("beat", beat_command(schedule=stack.work / "celerybeat-schedule"), env)
    condition_wait(lambda: http_ok(f"http://127.0.0.1:{web_port}/healthz"), timeout=90, what="uvicorn", watch=[web])
    stack.proxy = front_proxy_start(
        root=stack.work / "nginx",
        listen=f"127.0.0.1:{proxy_port}",
        portal=f"127.0.0.1:{web_port}",
        secret=env["PORTAL_PROXY_SECRET"],
    )
    condition_wait(lambda: "ready." in worker.text(), timeout=90, what="the Celery worker", watch=[worker])
    condition_wait(lambda: "beat: Starting" in beat.text(), timeout=90, what="Celery beat", watch=[beat])
    return url


def _agent_env() -> dict[str, str]:
    # An agent runs on a GPU host, not next to the portal's settings: no DATABASE_URL etc.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def agent_start(*, stack: Stack, portal_url: str, pool: int, token: str | None, name: str) -> Child:
    """The one node agent, simulating an 8×H100 host; returns once its node is READY with its 8
    GPUs and its workload side (long-poll, warm pool) has started."""
    command = agent_command(
        portal_url=portal_url,
        state_file=stack.work / "agent" / "state.json",
        workload_root=stack.workload_root,
        notebook_pool=pool,
        token=token,
        simulate=SIMULATE,
        hostname=HOSTNAME,
    )
    agent = stack.spawn(name, command, _agent_env())
    from apps.capacity.models import Gpu, Node

    condition_wait(
        lambda: (
            Gpu.objects.filter(node__hostname=HOSTNAME).count() == 8
            and Node.objects.filter(hostname=HOSTNAME, state="ready").exists()
        ),
        timeout=60,
        what="the agent's node to be ready with 8 GPUs",
        watch=[agent],
    )
    # Its workload side (long-poll thread, pool) has started once it logs this.
    condition_wait(
        lambda: "notebooks: workload root" in agent.text(), timeout=60, what="the agent's workloads", watch=[agent]
    )
    return agent


def agent_pool_ready(agent: Child) -> int:
    """Warm-pool servers ready to hand out, counted from the agent's log."""
    text = agent.text()
    return (
        text.count("warm-pool server ready as ")  # the agent logs its account, see pool.py
        - text.count("handed out warm-pool server")
        - text.count("died while waiting")
    )
