"""Production settings: `manage.py check --deploy` is clean, TLS-only protections are on, and the
portal refuses to start in production without its own secret key. Each case runs in a fresh
interpreter, since settings are read from the environment once, at import."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PORTAL_DEBUG" and not k.startswith("PORTAL_HSTS")}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        PORTAL_SECRET_KEY=secrets.token_urlsafe(50),
        PORTAL_ALLOWED_HOSTS="portal.example.com,testserver",
        PORTAL_HTTPS="1",
        # Never contacted by these checks; set so settings do not start embedded servers.
        DATABASE_URL="postgres://portal:portal@127.0.0.1:9/portal",
        REDIS_URL="redis://127.0.0.1:9",
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_the_deploy_check_is_clean_under_production_settings():
    # When the deploy check runs with production's environment
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())

    # Then it reports no warning (of any app) and passes
    output = done.stdout + done.stderr
    issues = [line for line in output.splitlines() if line.startswith("?:") or ": (" in line]
    assert issues == [], output
    assert done.returncode == 0, output


def test_the_deploy_check_would_catch_debug_in_production():
    # Given production settings with DEBUG switched on by mistake
    done = run(["manage.py", "check", "--deploy", "--tag", "security"], production_env(PORTAL_DEBUG="1"))

    # Then the check says so (the test above can fail)
    assert "security.W018" in done.stdout + done.stderr


def test_production_cookies_and_transport_are_locked_down():
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', 'CSRF_COOKIE_SAMESITE', 'SECURE_SSL_REDIRECT', "
        "'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER', 'DEBUG')}))"
    )
    done = run(["-c", script], production_env())
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SESSION_COOKIE_HTTPONLY"]
    assert values["SESSION_COOKIE_SAMESITE"] == values["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert values["SECURE_SSL_REDIRECT"] and values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["DEBUG"] is False


def test_production_sends_hsts_over_tls_and_redirects_plain_http():
    script = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "tls = c.get('/static/css/portal.css', secure=True); plain = c.get('/static/css/portal.css'); "
        "print('|'.join(map(str, (tls.status_code, tls.headers.get('Strict-Transport-Security'), "
        "plain.status_code, plain.headers.get('Location')))))"
    )
    done = run(["-c", script], production_env())
    assert done.returncode == 0, done.stderr
    tls_status, hsts, plain_status, location = done.stdout.strip().splitlines()[-1].split("|")
    assert tls_status == "200" and hsts == "max-age=31536000; includeSubDomains; preload"
    assert plain_status == "301" and location.startswith("https://testserver/")


@pytest.mark.parametrize("key", [None, "dev-only-insecure-key-change-me-in-production"])
def test_production_refuses_to_start_without_its_own_secret_key(key):
    env = production_env(PORTAL_SECRET_KEY=key)
    if key is None:
        env.pop("PORTAL_SECRET_KEY", None)
    done = run(["-c", "import django; django.setup()"], env)
    assert done.returncode != 0 and "PORTAL_SECRET_KEY is not set" in done.stderr
