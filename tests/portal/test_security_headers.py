"""Security headers on the portal's pages: a Content Security Policy that allows only the
portal's own scripts (plus Stripe.js), its websocket and Stripe, and no framing; nosniff and a
same-origin referrer policy. HSTS only over TLS (tests/portal/test_deploy_check.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def policy_of(response) -> dict[str, list[str]]:
    directives = [part.strip().split() for part in response.headers["Content-Security-Policy"].split(";")]
    return {directive[0]: directive[1:] for directive in directives if directive}


def test_a_page_carries_the_csp_and_the_other_security_headers(client):
    # When anyone opens the storefront
    response = client.get("/")

    # Then the page may run only its own scripts and Stripe.js, talk to itself (websocket
    # included) and to Stripe, and may not be framed
    assert response.status_code == 200
    policy = policy_of(response)
    stripe_origin = re.match(r"^https?://[^/]+", settings.STRIPE_JS_URL).group(0)
    assert "'self'" in policy["script-src"] and stripe_origin in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert "'self'" in policy["connect-src"]
    assert any(source.startswith("ws://") for source in policy["connect-src"])
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert policy["default-src"] == ["'self'"]
    # And the usual headers are there; HSTS is not, since this is plain HTTP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers


def test_the_api_docs_inline_script_runs_only_with_the_pages_nonce(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    nonces = [s for s in policy_of(response)["script-src"] if s.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = nonces[0][len("'nonce-") : -1]
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", response.content.decode())
    assert inline and all(f'nonce="{nonce}"' in attributes for attributes in inline)


def test_no_template_has_an_inline_script_or_event_handler():
    """The CSP forbids them; a page that used one would silently stop working in the browser."""
    offenders = []
    for folder in [ROOT / "templates", *sorted((ROOT / "apps").glob("*/templates"))]:
        for template in folder.rglob("*.html"):
            text = template.read_text()
            for match in re.finditer(r"<script(?![^>]*\bsrc=)(?![^>]*\bnonce=)[^>]*>", text):
                offenders.append(f"{template.relative_to(ROOT)}: {match.group(0)}")
            for match in re.finditer(r"\son[a-z]+\s*=\s*[\"']", text):
                offenders.append(f"{template.relative_to(ROOT)}: {match.group(0).strip()}")
    assert offenders == []
