"""PostgreSQL, Redis, the Channels layer and Celery.

DATABASE_URL and REDIS_URL name the servers; this module only reads them and starts nothing, so
importing the settings (a web process, a worker, `manage.py check`) never spawns a server. For
development and tests, `make run` (devtools/launcher.py) and `make test` (devtools/pytest_plugin.py)
start embedded ones and set both variables for every process they start.
"""

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_int, env_str


def _required_url(name: str, what: str) -> str:
    value = env_str(name)
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set: the settings only read where {what} runs. For development use "
            f"`make run` (or `make test`), which starts embedded PostgreSQL and Redis and sets it; "
            f"otherwise set {name} to your server."
        )
    return value


_database_url = _required_url("DATABASE_URL", "PostgreSQL")

# A connection pool per process (psycopg_pool, through Django). Without one every request opened a
# new connection and PostgreSQL forked a backend for it, which cost more CPU than the request's own
# work (bench/heartbeat). Sync code runs in one thread per web process under ASGI, so a few
# connections are plenty. 0 turns the pool off: the test process does (pytest-django manages its
# connections itself); then PORTAL_DB_CONN_MAX_AGE applies, as Django's persistent connections.
_pool_max_size = env_int("PORTAL_DB_POOL_MAX_SIZE", 4)
DATABASES = {
    "default": dj_database_url.parse(
        _database_url, conn_max_age=0 if _pool_max_size else env_int("PORTAL_DB_CONN_MAX_AGE", 0)
    )
}
if _pool_max_size:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": _pool_max_size,
        # Waiting longer for a free connection than a client waits for its answer helps nobody.
        "timeout": 10,
    }

REDIS_URL = _required_url("REDIS_URL", "Redis").rstrip("/")

# Separate logical databases keep the broker's queues apart from the channel layer's groups.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # No socket timeout: channels_redis waits for messages with blocking reads of its own
            # length, and redis-py 8's default 5 s timeout would cut them off, closing every
            # websocket and long-poll that sees no message for 5 s.
            "hosts": [{"address": f"{REDIS_URL}/1", "socket_timeout": None}],
            "prefix": env_str("PORTAL_CHANNEL_PREFIX", "asgi"),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{REDIS_URL}/2",
        "KEY_PREFIX": env_str("PORTAL_CACHE_PREFIX", "portal"),
    }
}

CELERY_BROKER_URL = f"{REDIS_URL}/0"
# The queue every task goes to and every worker takes from. Two portals on one Redis (a test's
# own set of web processes and workers beside the test session's) each name their own, so neither
# runs the other's tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("PORTAL_CELERY_QUEUE") or "celery"
CELERY_RESULT_BACKEND = None  # tasks write their outcome to PostgreSQL, not to a result store
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the message for another worker
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "capacity-node-liveness": {
        "task": "apps.capacity.tasks.node_liveness_check",
        # Only a backstop: each sweep plans the next at the oldest heartbeat's deadline (an ETA
        # task), which keeps the 2 intervals + 1 s bound; this restarts that chain if it is lost.
        "schedule": env_int("PORTAL_HEARTBEAT_INTERVAL_S", 10) / 2,
        # A sweep that waited this long behind other tasks is dropped: the next one is due anyway.
        "options": {"expires": 5},
    },
    "capacity-summary-repair": {
        "task": "apps.capacity.tasks.node_capacity_repair",
        # Normally finds nothing (triggers keep the summary); the check is one aggregate over the GPUs.
        "schedule": env_int("PORTAL_CAPACITY_REPAIR_EVERY_S", 300),
    },
    "capacity-telemetry-prune": {
        "task": "apps.capacity.tasks.gpu_samples_prune",
        # Deletes the hour of GPU history that passed PORTAL_TELEMETRY_RETENTION_DAYS.
        "schedule": 3600,
    },
    "capacity-reservations-due": {
        "task": "apps.capacity.tasks.reservations_due",
        # Holds reservations at their start (an ETA task does it on time; this catches any it missed).
        "schedule": env_int("PORTAL_RESERVATIONS_EVERY_S", 30),
    },
    "billing-usage-meter": {
        "task": "apps.billing.tasks.metering.usage_meter",
        "schedule": env_int("PORTAL_METER_EVERY_S", 60),
    },
    "billing-reservation-charges": {
        "task": "apps.billing.tasks.reservations.reservation_charges",
        "schedule": env_int("PORTAL_METER_EVERY_S", 60),
    },
    "billing-budgets-enforce": {
        "task": "apps.billing.tasks.budgets.budgets_enforce",
        "schedule": env_int("PORTAL_BUDGETS_EVERY_S", 60),
    },
    "billing-invoices-close": {
        "task": "apps.billing.tasks.invoicing.invoices_close",
        "schedule": env_int("PORTAL_INVOICES_EVERY_S", 300),
    },
    "billing-standing-enforce": {
        "task": "apps.billing.tasks.stripe.payment_standing_enforce",
        "schedule": env_int("PORTAL_STANDING_EVERY_S", 300),
    },
    "chargeback-usage-rollup": {
        "task": "chargeback.usage_rollup",
        # Folds new usage records and charges, and the telemetry of hours that are over.
        "schedule": env_int("PORTAL_CHARGEBACK_ROLLUP_EVERY_S", 300),
    },
    "instances-reconcile": {
        "task": "provisioning.tasks.instances_reconcile",
        "schedule": env_int("PORTAL_RECONCILE_EVERY_S", 5),
    },
}
