"""Users, sign-up (django-allauth), passwords and mail."""

from .core import BASE_DIR
from .env import env_int, env_str

AUTH_USER_MODEL = "accounts.User"

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
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Neocloud] "
ACCOUNT_RATE_LIMITS = {"login_failed": "20/m/ip,10/5m/key"}

# Locally mail is written to files under the data folder, where a developer (and the browser
# tests) read the verification and invitation links. Production sets an SMTP backend.
EMAIL_BACKEND = env_str("PORTAL_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env_str("PORTAL_EMAIL_DIR", str(BASE_DIR / ".data" / "mail"))
DEFAULT_FROM_EMAIL = env_str("PORTAL_FROM_EMAIL", "Neocloud <no-reply@neocloud.localhost>")

INVITATION_TTL_HOURS = env_int("PORTAL_INVITATION_TTL_HOURS", 72)
API_KEY_MAX_TTL_DAYS = env_int("PORTAL_API_KEY_MAX_TTL_DAYS", 365)
