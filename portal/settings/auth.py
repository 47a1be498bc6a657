"""Users, sign-up (django-allauth), passwords and mail."""

from .core import BASE_DIR
from .env import env_int, env_str

AUTH_USER_MODEL = "accounts.User"

# The product's name wherever the portal names itself to a person: allauth's mail (its
# `current_site`, set by apps.accounts.adapters.AccountAdapter, since without
# django.contrib.sites allauth would use the request's host), the subject prefix and the sender.
SITE_NAME = env_str("PORTAL_SITE_NAME", "Neocloud")

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "catalog:storefront"

ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
# Sign-up answers "already registered" on the form instead of emailing the existing account:
# a person who mistypes needs the message now. This reveals which addresses have accounts;
# the login rate limits below bound how fast anyone can probe.
ACCOUNT_PREVENT_ENUMERATION = False
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{SITE_NAME}] "
# Counted in the cache (Redis), so every web process shares them. "ip" is the client address
# (see security.py), "key" the email address tried. A rate over its limit answers 429
# (templates/429.html); too many failed logins for one address answer a form error instead.
ACCOUNT_RATE_LIMITS = {
    "login": env_str("PORTAL_RATE_LOGIN", "30/m/ip"),
    "login_failed": env_str("PORTAL_RATE_LOGIN_FAILED", "20/m/ip,10/5m/key"),
    "signup": env_str("PORTAL_RATE_SIGNUP", "20/m/ip"),
    "reset_password": env_str("PORTAL_RATE_RESET_PASSWORD", "20/m/ip,5/h/key"),
    "reset_password_from_key": env_str("PORTAL_RATE_RESET_PASSWORD_FROM_KEY", "20/m/ip"),
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
}
# API keys (apps/accounts/api/authentication.py): failed attempts per client address and per
# key prefix within a window. Successful requests are never counted.
API_KEY_FAILURES_PER_ADDRESS = env_int("PORTAL_API_KEY_FAILURES_PER_ADDRESS", 20)
API_KEY_FAILURES_PER_PREFIX = env_int("PORTAL_API_KEY_FAILURES_PER_PREFIX", 20)
API_KEY_FAILURE_WINDOW_S = env_int("PORTAL_API_KEY_FAILURE_WINDOW_S", 60)

# Locally mail is written to files under the data folder, where a developer (and the browser
# tests) read the verification and invitation links. Production sets an SMTP backend.
EMAIL_BACKEND = env_str("PORTAL_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env_str("PORTAL_EMAIL_DIR", str(BASE_DIR / ".data" / "mail"))
DEFAULT_FROM_EMAIL = env_str("PORTAL_FROM_EMAIL", f"{SITE_NAME} <no-reply@neocloud.localhost>")

INVITATION_TTL_HOURS = env_int("PORTAL_INVITATION_TTL_HOURS", 72)
API_KEY_MAX_TTL_DAYS = env_int("PORTAL_API_KEY_MAX_TTL_DAYS", 365)
