"""Django itself: apps, middleware, templates, static files."""

import hashlib
from pathlib import Path

from .env import env_bool, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = env_bool("PORTAL_DEBUG", False)
# A fixed development key only when nothing is configured; production must set one.
SECRET_KEY = env_str("PORTAL_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
ALLOWED_HOSTS = env_list("PORTAL_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("PORTAL_CSRF_TRUSTED_ORIGINS", [])
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")
# Shared by the portal and its front proxy (devtools/proxy.py), which sends it on every
# notebook authorisation request; derived from the secret key unless set.
PROXY_SHARED_SECRET = env_str("PORTAL_PROXY_SECRET") or hashlib.sha256(f"proxy:{SECRET_KEY}".encode()).hexdigest()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "csp",
    "django_htmx",
    "rest_framework",
    "django_filters",
    "django_tables2",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "portal.ui",
    "apps.accounts",
    "apps.catalog",
    "apps.capacity",
    "apps.instances",
    "apps.billing",
    "apps.chargeback",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "portal.middleware.ControlCharacterMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.middleware.CurrentOrganizationMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.organizations",
            ],
        },
    }
]

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only deployments collect static files; locally WhiteNoise serves them from static/ directly.
STATIC_ROOT = env_str("PORTAL_STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True  # serve straight from static/ without collectstatic in dev/tests
# Look files up on each request, so an edited stylesheet shows on reload; `make run` turns it on
# (it runs with DEBUG off), production leaves it off.
WHITENOISE_AUTOREFRESH = env_bool("PORTAL_STATIC_AUTOREFRESH", DEBUG)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cookies, HTTPS, security headers and the Content Security Policy: see security.py.
