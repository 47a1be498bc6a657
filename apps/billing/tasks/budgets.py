"""Budget tasks: the periodic enforcement and the alert mails it queues."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from apps.accounts.models import Membership
from apps.accounts.roles import CAN_VIEW_BILLING
from portal.ui.money import money_format

from ..models import BudgetAlert
from ..services.budgets import CAP_STOP, CAP_WARNING
from ..services.budgets import budgets_enforce as budgets_enforce_service

_SUBJECTS = {
    CAP_WARNING: "{org}: the spending cap of {scope} is reached; running instances will be stopped",
    CAP_STOP: "{org}: instances stopped at the spending cap of {scope}",
}


@shared_task(ignore_result=True)
def budgets_enforce() -> dict[str, int]:
    """Alerts and hard caps for every budget (beat, every PORTAL_BUDGETS_EVERY_S). Idempotent."""
    return budgets_enforce_service()


@shared_task(autoretry_for=(ConnectionError, TimeoutError, OSError), retry_backoff=True, max_retries=5)
def budget_alert_email_send(alert_id: int, user_ids: list[int] | None = None) -> int:
    """Mail one alert to the organization's owners, admins and billing members (and, for a cap,
    the owners of the instances it concerns). Returns how many were mailed."""
    alert = BudgetAlert.objects.select_related("budget__organization", "budget__project").filter(pk=alert_id).first()
    if alert is None:
        return 0  # the budget was removed since: nothing to say any more
    budget, organization = alert.budget, alert.budget.organization
    managers = Membership.objects.filter(organization=organization, role__in=CAN_VIEW_BILLING)
    members = Membership.objects.filter(organization=organization, user_id__in=user_ids or [])
    recipients = sorted({m.user.email for m in (managers | members).select_related("user").distinct()})
    if not recipients:
        return 0
    scope = f"project {budget.project.name}" if budget.project_id else organization.name
    base = settings.PORTAL_BASE_URL.rstrip("/")
    context = {
        "alert": alert,
        "budget": budget,
        "organization": organization,
        "scope": scope,
        "amount": money_format(budget.monthly_amount, budget.currency),
        "spend": money_format(alert.spend, budget.currency),
        "budgets_url": base + reverse("billing-budgets", kwargs={"slug": organization.slug}),
        "grace_min": max(settings.BILLING["CAP_STOP_GRACE_S"] // 60, 1),
    }
    subject = _SUBJECTS.get(alert.threshold, "{org}: {threshold} % of the monthly budget of {scope} used")
    send_mail(
        subject=settings.ACCOUNT_EMAIL_SUBJECT_PREFIX
        + subject.format(org=organization.name, scope=scope, threshold=alert.threshold),
        message=render_to_string("billing/budgets/email/alert.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )
    return len(recipients)
