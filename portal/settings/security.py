"""Security: HTTPS, cookies, response headers and the Content Security Policy (django-csp).

Production is `PORTAL_HTTPS=1`: the portal is served over TLS by its front proxy, which sets
X-Forwarded-Proto. Then cookies are Secure, plain HTTP is redirected, HSTS is sent, and a real
`PORTAL_SECRET_KEY` is required; `manage.py check --deploy` is clean with DEBUG off, a real key,
`PORTAL_ALLOWED_HOSTS` and `PORTAL_HTTPS=1` (tests/portal/test_deploy_check.py). Development and
tests run over plain HTTP on loopback, so none of the TLS-only settings apply there, but the CSP
does: a page that needs an inline script fails its tests, not its production users.

The client address used by rate limits (allauth's and the API key's) is REMOTE_ADDR: uvicorn
takes it from X-Forwarded-For only when the connection comes from the loopback front proxy
(uvicorn's default --forwarded-allow-ips), so a client reaching uvicorn otherwise cannot choose it.
"""

from urllib.parse import urlsplit

from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from .billing import STRIPE_API_BASE, STRIPE_JS_URL
from .core import PORTAL_BASE_URL, SECRET_KEY
from .env import env_bool, env_int, env_list

HTTPS = env_bool("PORTAL_HTTPS", False)
DEV_SECRET_KEY_PREFIX = "dev-only-insecure-key"

if HTTPS and SECRET_KEY.startswith(DEV_SECRET_KEY_PREFIX):
    # Sessions, password reset links and the proxy's shared secret all derive from this key.
    raise ImproperlyConfigured("PORTAL_HTTPS is on (production) but PORTAL_SECRET_KEY is not set.")

# --- cookies ------------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
# Lax, not Strict: a link from an email (invitation, verification) must arrive signed in.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Pages send the token from the template (hx-headers, form fields); tests read the cookie.
CSRF_COOKIE_HTTPONLY = False

# --- transport ----------------------------------------------------------------------------------
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = HTTPS and env_bool("PORTAL_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = env_list("PORTAL_SSL_REDIRECT_EXEMPT", [])
# HSTS only over TLS: sent over plain HTTP it would be ignored at best, and a loopback
# development host must never be pinned to HTTPS. Preload only marks the header eligible;
# joining the browsers' list is a separate, deliberate step.
SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("PORTAL_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = HTTPS and env_bool("PORTAL_HSTS_PRELOAD", True)

# --- headers ------------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"  # older browsers; CSP frame-ancestors below for the rest


def _origin(url: str) -> str | None:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _websocket_origin(url: str) -> str | None:
    parts = urlsplit(url or "")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    return f"{scheme}://{parts.netloc}" if scheme and parts.netloc else None


# Stripe.js: real Stripe in production (script and iframes from js.stripe.com, API calls to
# api.stripe.com, 3-D Secure frames from hooks.stripe.com); localstripe's stand-in locally, which
# is served by and talks to the localstripe server.
_STRIPE_JS = _origin(STRIPE_JS_URL)
_STRIPE_API = _origin(STRIPE_API_BASE) or "https://api.stripe.com"
_STRIPE_FRAMES = [_STRIPE_JS] if STRIPE_API_BASE else [_STRIPE_JS, "https://hooks.stripe.com"]


def _sources(*items) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        # No inline scripts: page scripts are static files; the nonce is for third-party templates
        # that inline one (the Swagger UI page, templates/drf_spectacular/swagger_ui.html).
        "script-src": _sources(csp.SELF, _STRIPE_JS, csp.NONCE),
        # Inline styles cannot run code, and Stripe.js, Swagger UI and Redoc set them.
        "style-src": [csp.SELF, "'unsafe-inline'"],
        "img-src": _sources(csp.SELF, "data:", "https://*.stripe.com" if not STRIPE_API_BASE else None),
        "font-src": [csp.SELF, "data:"],
        # 'self' covers the live-status websocket in current browsers (CSP3); the explicit
        # ws(s) origin of the public URL keeps it working in those that predate that rule.
        "connect-src": _sources(csp.SELF, _websocket_origin(PORTAL_BASE_URL), _STRIPE_API),
        "frame-src": _sources(*_STRIPE_FRAMES),
        "worker-src": [csp.SELF, "blob:"],  # Redoc parses the schema in a worker
        "frame-ancestors": [csp.NONE],
        "form-action": [csp.SELF],
        "base-uri": [csp.SELF],
        "object-src": [csp.NONE],
    },
}
