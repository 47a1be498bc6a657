"""Stripe and the billing rules. Production sets real Stripe keys; development and tests point
the real `stripe` library at localstripe (devtools/localstripe_plus.py) via STRIPE_API_BASE."""

from decimal import Decimal

from .env import env_int, env_str

STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "sk_test_localstripe")
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "whsec_localstripe")
# Empty: Stripe itself. Set to localstripe's URL in development and tests.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")
# Stripe.js: localstripe serves a stand-in of Elements at <base>/js.stripe.com/v3/.
STRIPE_JS_URL = env_str(
    "STRIPE_JS_URL", f"{STRIPE_API_BASE}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/"
)
# The stripe library retries connection errors and 5xx with the same idempotency key.
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
# Stripe refuses webhook timestamps older than this (replay of an old, captured delivery).
STRIPE_WEBHOOK_TOLERANCE_S = env_int("STRIPE_WEBHOOK_TOLERANCE_S", 300)

BILLING = {
    "CURRENCY": env_str("PORTAL_BILLING_CURRENCY", "USD"),
    # How often running instances are cut into usage records and spend is checked.
    "METER_EVERY_S": env_int("PORTAL_METER_EVERY_S", 60),
    # Accounts younger than this are invoiced whenever their unbilled usage reaches the threshold.
    "YOUNG_ACCOUNT_DAYS": env_int("PORTAL_YOUNG_ACCOUNT_DAYS", 30),
    "THRESHOLD_AMOUNT": Decimal(env_str("PORTAL_THRESHOLD_INVOICE_AMOUNT", "100.00")),
    # After a failed payment: launches blocked after GRACE, running instances stopped SUSPEND later.
    "PAYMENT_GRACE_S": env_int("PORTAL_PAYMENT_GRACE_S", 3 * 24 * 3600),
    "PAYMENT_SUSPEND_AFTER_S": env_int("PORTAL_PAYMENT_SUSPEND_AFTER_S", 4 * 24 * 3600),
    # A hard cap warns running instances first and stops them this long after the warning.
    "CAP_STOP_GRACE_S": env_int("PORTAL_CAP_STOP_GRACE_S", 600),
    # Monthly hard cap a new self-serve (personal) organization starts with; the owner raises it.
    "DEFAULT_MONTHLY_CAP": Decimal(env_str("PORTAL_DEFAULT_MONTHLY_CAP", "100.00")),
    "BUDGET_ALERT_PERCENTS": (50, 80, 100),
    # Credit top-ups by card: the smallest and largest amount one payment may buy.
    "TOPUP_MIN": Decimal(env_str("PORTAL_TOPUP_MIN", "5.00")),
    "TOPUP_MAX": Decimal(env_str("PORTAL_TOPUP_MAX", "10000.00")),
}
