"""Billing's tables, one module per concern. Money is Decimal with its currency, never a float."""

from .accounts import BillingAccount, BillingEvent, PaymentMethod, PaymentStanding, PaymentTerms
from .budgets import Budget, BudgetAlert
from .credits import CreditApplication, CreditGrant, CreditKind
from .invoices import Invoice, InvoicedUsage, InvoiceKind, InvoiceLine, InvoiceLineKind, InvoiceStatus
from .onboarding import OnboardingDismissal
from .reservations import InvoicedReservationCharge, ReservationCharge
from .usage import InstancePrice, MeteredRun, RunEndReason, UsageKind, UsageRecord
from .webhooks import WebhookEvent, WebhookEventStatus

__all__ = [
    "BillingAccount",
    "BillingEvent",
    "Budget",
    "BudgetAlert",
    "CreditApplication",
    "CreditGrant",
    "CreditKind",
    "InstancePrice",
    "Invoice",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceLineKind",
    "InvoiceStatus",
    "InvoicedReservationCharge",
    "InvoicedUsage",
    "MeteredRun",
    "OnboardingDismissal",
    "PaymentMethod",
    "PaymentStanding",
    "PaymentTerms",
    "ReservationCharge",
    "RunEndReason",
    "UsageKind",
    "UsageRecord",
    "WebhookEvent",
    "WebhookEventStatus",
]
