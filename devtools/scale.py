"""How many web and worker processes `make run` starts, read from the environment.

    PORTAL_WEB_WORKERS=2          ASGI server processes (uvicorn), each on its own loopback port,
                                  all behind the front proxy (nginx balances across them)
    PORTAL_CELERY_WORKERS=2       Celery worker processes, all on the one Redis broker
    PORTAL_CELERY_CONCURRENCY=4   tasks each worker runs at once (its prefork children)

Separate uvicorn processes rather than `uvicorn --workers N`: each has its own pid and port, so
nginx notices one that died and sends the next request to another (and a test can kill exactly
one), where uvicorn's own workers share one socket behind one supervisor.
Every value is checked before anything starts: a bad one is one clear line, and nothing runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WEB_VARIABLE = "PORTAL_WEB_WORKERS"
WORKERS_VARIABLE = "PORTAL_CELERY_WORKERS"
CONCURRENCY_VARIABLE = "PORTAL_CELERY_CONCURRENCY"
# One machine's worth: past these a laptop only thrashes; production scales across machines.
LIMITS = {WEB_VARIABLE: 32, WORKERS_VARIABLE: 32, CONCURRENCY_VARIABLE: 64}


class ScaleError(ValueError):
    """A process-count variable that cannot be used; its message is one line naming it."""


@dataclass(frozen=True)
class ProcessCounts:
    web: int = 1
    workers: int = 1
    concurrency: int = 2

    def describe(self) -> str:
        return (
            f"{self.web} web process(es) behind the front proxy, {self.workers} Celery worker(s) "
            f"running {self.concurrency} task(s) each"
        )


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= LIMITS[name]:
        raise ScaleError(f"{name} must be a whole number from 1 to {LIMITS[name]}, not {raw!r}")
    return int(raw)


def process_counts_from_env(env: Mapping[str, str]) -> ProcessCounts:
    default = ProcessCounts()
    return ProcessCounts(
        web=_count(env, WEB_VARIABLE, default.web),
        workers=_count(env, WORKERS_VARIABLE, default.workers),
        concurrency=_count(env, CONCURRENCY_VARIABLE, default.concurrency),
    )
