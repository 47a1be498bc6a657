"""Budgets and spending caps. A budget is a monthly amount for an organization or one project;
alerts go out at BILLING["BUDGET_ALERT_PERCENTS"] once per budget and month. With a hard cap,
reaching 100 % refuses launches (see eligibility), warns what runs, and after
BILLING["CAP_STOP_GRACE_S"] stops it through the instances lifecycle.

Locks (the order is in portal/db.py): the budget row, then the instances in scope in created_at
order, each followed by its open run (through the lifecycle). The metering the pass starts with
is its own transactions, committed before any budget is locked."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import OrganizationKind, Project
from apps.accounts.roles import OrgAccess
from apps.instances.models import STOPPABLE_STATES, Instance
from apps.instances.services.actions import instance_stop_request
from apps.instances.services.lifecycle import instance_note
from portal.db import atomic_retry
from portal.ui.money import money_format

from ..live import billing_changed_on_commit
from ..models import BillingAccount, BillingEvent, Budget, BudgetAlert
from ..money import money_minor_digits, money_round
from ..selectors.usage import month_bounds, usage_spend_get
from .metering import usage_open_runs_meter

CAP_WARNING, CAP_STOP = "cap_warning", "cap_stop"
# Instances a reached cap stops: everything that runs or is on its way to run.
_MAX_AMOUNT = Decimal("999999999999.99")  # what Budget.monthly_amount (14 digits, 2 places) holds


def _amount_clean(raw, currency: str) -> Decimal:
    try:
        amount = Decimal(str(raw).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        raise ValidationError({"monthly_amount": "Enter an amount such as 250 or 99.50."}) from None
    if not amount.is_finite() or amount <= 0:
        raise ValidationError({"monthly_amount": "A budget must be more than zero."})
    if amount.as_tuple().exponent < -money_minor_digits(currency):
        digits = money_minor_digits(currency)
        raise ValidationError({"monthly_amount": f"Amounts in {currency} have at most {digits} decimals."})
    if amount > _MAX_AMOUNT:
        raise ValidationError({"monthly_amount": "That amount is too large."})
    return money_round(amount, currency)


def _account(organization) -> BillingAccount:
    from .accounts import billing_account_get_or_create

    return billing_account_get_or_create(organization=organization)


def _scope_name(budget: Budget) -> str:
    return f"project {budget.project.name}" if budget.project_id else budget.organization.name


def _month(at: datetime) -> date:
    return month_bounds(at)[0].date()


def _spend(budget: Budget, now: datetime) -> Decimal:
    start, end = month_bounds(now)
    return usage_spend_get(
        organization_id=budget.organization_id, start=start, end=end, project_id=budget.project_id, now=now
    )


def _alerts_forget_unreached(*, budget: Budget, now: datetime) -> None:
    """After the amount or the cap changes, this month's alerts the new amount has not reached
    are forgotten, so they go out again when it is reached (and a cap raised after its warning
    does not stop instances on the strength of the old warning)."""
    spend = _spend(budget, now)
    stale = []
    for alert in BudgetAlert.objects.filter(budget=budget, month=_month(now)):
        if alert.threshold in (CAP_WARNING, CAP_STOP):
            reached = budget.hard_cap and spend >= budget.monthly_amount
        else:
            reached = spend * 100 >= budget.monthly_amount * int(alert.threshold)
        if not reached:
            stale.append(alert.pk)
    BudgetAlert.objects.filter(pk__in=stale).delete()


def _check_manager(access: OrgAccess) -> None:
    if not access.can_view_billing:
        raise PermissionDenied("Only owners, admins and billing members manage budgets.")


@atomic_retry
def budget_set(
    *,
    access: OrgAccess,
    monthly_amount,
    hard_cap: bool,
    project: Project | None = None,
    currency: str | None = None,
) -> Budget:
    """Create or change the monthly budget of the organization (project None) or of one project."""
    _check_manager(access)
    organization = access.organization
    if project is not None and project.organization_id != organization.pk:
        raise ValidationError({"project": "That project belongs to another organization."})
    account = _account(organization)
    if currency and currency.upper() != account.currency:
        raise ValidationError({"currency": f"Budgets are in {account.currency}, the currency this account pays in."})
    amount = _amount_clean(monthly_amount, account.currency)
    scope = {"organization": organization, "project": project}
    budget = Budget.objects.select_for_update(no_key=True).filter(**scope).first()
    now = timezone.now()
    if budget is None:
        try:
            with transaction.atomic():
                budget = Budget.objects.create(
                    **scope, monthly_amount=amount, currency=account.currency, hard_cap=hard_cap, updated_at=now
                )
        except IntegrityError:  # created by a concurrent request: change that one instead
            budget = Budget.objects.select_for_update(no_key=True).get(**scope)
    budget.monthly_amount, budget.hard_cap, budget.is_default, budget.updated_at = amount, hard_cap, False, now
    budget.save(update_fields=["monthly_amount", "hard_cap", "is_default", "updated_at"])
    _alerts_forget_unreached(budget=budget, now=now)
    cap = " with a hard cap" if hard_cap else ""
    BillingEvent.objects.create(
        account=account,
        kind="budget.set",
        message=f"Monthly budget of {_scope_name(budget)} set to {money_format(amount, budget.currency)}{cap}",
    )
    billing_changed_on_commit(organization_id=organization.pk)
    return budget


@transaction.atomic
def budget_delete(*, access: OrgAccess, budget: Budget) -> None:
    """Remove a budget (the default cap of a new account included): no alerts, no cap."""
    _check_manager(access)
    if budget.organization_id != access.organization.pk:
        raise PermissionDenied("That budget belongs to another organization.")
    BillingEvent.objects.create(
        account=_account(access.organization),
        kind="budget.removed",
        message=f"Monthly budget of {_scope_name(budget)} ({money_format(budget.monthly_amount, budget.currency)}) "
        "removed",
    )
    Budget.objects.filter(pk=budget.pk).delete()
    billing_changed_on_commit(organization_id=access.organization.pk)


def budget_default_create(*, account: BillingAccount) -> Budget | None:
    """The hard cap a new self-serve (personal) account starts with, so a forgotten notebook
    cannot run up a bill nobody meant. Called once, when the billing account is created: an
    owner who removes the cap is not given it back."""
    organization = account.organization
    if organization.kind != OrganizationKind.PERSONAL:
        return None
    budget, _ = Budget.objects.get_or_create(
        organization=organization,
        project=None,
        defaults={
            "monthly_amount": settings.BILLING["DEFAULT_MONTHLY_CAP"],
            "currency": account.currency,
            "hard_cap": True,
            "is_default": True,
        },
    )
    return budget


# --- enforcement -------------------------------------------------------------------------------


def _alert_once(*, budget: Budget, month: date, threshold: str, spend: Decimal, now: datetime):
    """(alert, created): the unique row makes each alert happen once, even with two enforcers."""
    try:
        with transaction.atomic():
            return (
                BudgetAlert.objects.create(
                    budget=budget,
                    month=month,
                    threshold=threshold,
                    spend=money_round(spend, budget.currency),
                    created_at=now,
                ),
                True,
            )
    except IntegrityError:
        return BudgetAlert.objects.get(budget=budget, month=month, threshold=threshold), False


def _mail_on_commit(alert: BudgetAlert, user_ids: set[int] = frozenset()) -> None:
    from ..tasks.budgets import budget_alert_email_send

    transaction.on_commit(lambda: budget_alert_email_send.delay(alert.pk, sorted(user_ids)))


def _instances_in_scope(budget: Budget):
    instances = Instance.objects.filter(organization_id=budget.organization_id, state__in=STOPPABLE_STATES)
    if budget.project_id:
        instances = instances.filter(project_id=budget.project_id)
    # created_at, then pk: the lock order's one order for several instances (portal/db.py).
    return instances.order_by("created_at", "pk")


@atomic_retry
def budget_enforce(*, budget_id: int, now: datetime | None = None) -> Counter:
    """Send the alerts this month's spend has reached, and apply a reached hard cap. Idempotent."""
    now = now or timezone.now()
    done: Counter = Counter()
    # skip_locked: a budget being changed right now is enforced on the next pass, with its new amount.
    budget = (
        Budget.objects.select_for_update(skip_locked=True, no_key=True, of=("self",))
        .select_related("organization", "project")
        .filter(pk=budget_id)
        .first()
    )
    if budget is None:
        return done
    month, spend = _month(now), _spend(budget, now)
    amount = budget.monthly_amount
    reached = []
    for percent in sorted(settings.BILLING["BUDGET_ALERT_PERCENTS"]):
        if spend * 100 >= amount * percent:
            alert, created = _alert_once(budget=budget, month=month, threshold=str(percent), spend=spend, now=now)
            if created:
                reached.append((percent, alert))
    # Spend that jumps past several thresholds at once gets one mail, for the highest; a hard
    # cap's warning says all that the 100 % alert would, and more, so that one is its mail.
    if reached and not (budget.hard_cap and reached[-1][0] >= 100):
        _mail_on_commit(reached[-1][1])
        done["alerts"] += 1
    if budget.hard_cap and spend >= amount:
        _cap_apply(
            budget=budget,
            month=month,
            spend=spend,
            now=now,
            done=done,
            note=instance_note,
            stop=instance_stop_request,
        )
    if done:
        billing_changed_on_commit(organization_id=budget.organization_id)
    return done


def _cap_apply(*, budget: Budget, month: date, spend: Decimal, now: datetime, done: Counter, note, stop) -> None:
    cap = money_format(budget.monthly_amount, budget.currency)
    what = _scope_name(budget)
    grace_s = settings.BILLING["CAP_STOP_GRACE_S"]
    warning, created = _alert_once(budget=budget, month=month, threshold=CAP_WARNING, spend=spend, now=now)
    instances = list(_instances_in_scope(budget))
    if created:
        from .eligibility import billing_page_url

        where = billing_page_url("billing-budgets", budget.organization)
        for instance in instances:
            note(
                instance=instance,
                source="billing",
                message=f"The monthly spending cap of {cap} for {what} is reached: this instance will be stopped "
                f"in {_duration(grace_s)} unless the cap is raised at {where}",
            )
        _mail_on_commit(warning, {i.owner_id for i in instances})
        done["cap_warnings"] += 1
        return
    if warning.created_at + timedelta(seconds=grace_s) > now:
        return
    stop_alert, created = _alert_once(budget=budget, month=month, threshold=CAP_STOP, spend=spend, now=now)
    # Every pass after the grace stops what is still running in scope: something that was already
    # on its way when the cap was reached is stopped too, without a new warning.
    reason = f"Stopping: the monthly spending cap of {cap} for {what} is reached"
    stopped = [i for i in instances if stop(instance=i, message=reason, source="billing") is not None]
    done["cap_stopped"] += len(stopped)
    if created:
        _mail_on_commit(stop_alert, {i.owner_id for i in stopped})


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"


def budgets_enforce(*, now: datetime | None = None) -> dict[str, int]:
    """Meter what runs, then enforce every budget (beat, every PORTAL_BUDGETS_EVERY_S)."""
    now = now or timezone.now()
    # Never cut usage past the real clock, even when a test enforces "later".
    usage_open_runs_meter(now=min(now, timezone.now()))
    done: Counter = Counter()
    for budget_id in Budget.objects.order_by("pk").values_list("pk", flat=True).iterator():
        done.update(budget_enforce(budget_id=budget_id, now=now))
    return dict(done)
