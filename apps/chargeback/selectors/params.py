"""The request side of a chargeback query: query-string parameters → ChargebackQuery, with every
mistake reported as a ValidationError keyed by parameter (the API answers it as a 400 with the
reasons, the pages as form errors), never a 500. The pages and the API share it.

Parameters (all optional):
  start, end   first and LAST day, inclusive, YYYY-MM-DD (UTC days); or
  month        YYYY-MM, the whole month;  default: this month up to today
  group_by     up to two of project, owner, instance, offering, flavor, region, label:<key>,
               comma-separated or repeated
  label        key=value, repeated or comma-separated; all must match (effective labels)
  project      a project slug (drill-down)
  instance     an instance id (drill-down)
  owner        a user id (drill-down; members and viewers always see only their own usage)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

from apps.accounts.labels import labels_parse
from apps.accounts.models import Organization, Project
from apps.accounts.roles import OrgAccess

from .report import DIMENSIONS, GROUP_BY_MAX, ChargebackQuery, dimension_is_valid

RANGE_DAYS_MAX = 366
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_SHOWN = 60  # how much of a bad value an error message repeats


def _values(params: Mapping, name: str) -> list[str]:
    raw = params.getlist(name) if hasattr(params, "getlist") else params.get(name)
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    return [str(item) for item in items]


def _one(params: Mapping, name: str) -> str:
    values = [v.strip() for v in _values(params, name) if v.strip()]
    return values[-1] if values else ""


def _date(text: str, name: str, errors: dict) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.setdefault(name, []).append(f"“{text[:_SHOWN]}” is not a date (YYYY-MM-DD).")
        return None


def _month(text: str, errors: dict) -> tuple[date, date] | None:
    match = _MONTH.match(text)
    if match and 1 <= int(match[2]) <= 12 and 1 <= int(match[1]) < 9999:
        first = date(int(match[1]), int(match[2]), 1)
        return first, (first + timedelta(days=32)).replace(day=1)
    errors.setdefault("month", []).append(f"“{text[:_SHOWN]}” is not a month (YYYY-MM).")
    return None


def _range(params: Mapping, today: date, errors: dict) -> tuple[date, date]:
    """[start, end) from start/end (end inclusive) or month; this month so far by default."""
    month, start_text, end_text = _one(params, "month"), _one(params, "start"), _one(params, "end")
    this_month = today.replace(day=1), today + timedelta(days=1)
    if month:
        if start_text or end_text:
            errors.setdefault("month", []).append("Give either month or start/end, not both.")
        return _month(month, errors) or this_month
    start = _date(start_text, "start", errors) if start_text else None
    last = _date(end_text, "end", errors) if end_text else None
    if start_text and start is None or end_text and last is None:
        return this_month
    if start is None and last is None:
        return this_month
    if start is None:
        start = last.replace(day=1)
    if last is None:
        last = max(today, start)
    if start > last:
        errors.setdefault("end", []).append(f"The range ends ({last}) before it starts ({start}).")
        return this_month
    if (last - start).days + 1 > RANGE_DAYS_MAX:
        errors.setdefault("end", []).append(
            f"A range is at most {RANGE_DAYS_MAX} days; {start} to {last} is {(last - start).days + 1}."
        )
        return this_month
    if last >= date.max:
        errors.setdefault("end", []).append("The range's last day is out of range.")
        return this_month
    return start, last + timedelta(days=1)


def _group_by(params: Mapping, errors: dict) -> tuple[str, ...]:
    names = [n.strip() for v in _values(params, "group_by") for n in v.split(",") if n.strip()]
    problems = []
    for name in names:
        if not dimension_is_valid(name):
            problems.append(f"Unknown dimension “{name[:_SHOWN]}”: use {', '.join(DIMENSIONS)} or label:<key>.")
    if len(names) > GROUP_BY_MAX:
        problems.append(f"Group by at most {GROUP_BY_MAX} dimensions; got {len(names)}.")
    if len(set(names)) != len(names):
        problems.append("A dimension is given twice.")
    if problems:
        errors["group_by"] = problems
        return ()
    return tuple(names)


def _labels(params: Mapping, errors: dict) -> tuple[tuple[str, str], ...]:
    text = ",".join(_values(params, "label"))
    try:
        return tuple(sorted(labels_parse(text).items()))
    except ValidationError as exc:
        errors["label"] = exc.messages
        return ()


def chargeback_query_from_params(
    *, organization: Organization, access: OrgAccess, params: Mapping, today: date | None = None
) -> ChargebackQuery:
    """The query `params` ask for, as `access` may see it: members and viewers only their own
    usage, whatever they ask. Raises ValidationError({param: [reasons]}) on any bad parameter."""
    today = today or datetime.now(tz=UTC).date()
    errors: dict[str, list[str]] = {}
    start, end = _range(params, today, errors)
    group_by = _group_by(params, errors)
    labels = _labels(params, errors)

    project_id = None
    if slug := _one(params, "project"):
        project_id = Project.objects.filter(organization=organization, slug=slug).values_list("pk", flat=True).first()
        if project_id is None:
            errors["project"] = [f"No project “{slug[:_SHOWN]}” in this organization."]
    instance_id = None
    if text := _one(params, "instance"):
        try:
            instance_id = uuid.UUID(text)
        except ValueError:
            errors["instance"] = [f"“{text[:_SHOWN]}” is not an instance id."]
    owner_id = None
    if text := _one(params, "owner"):
        if not text.isdigit() or len(text) > 18:
            errors["owner"] = [f"“{text[:_SHOWN]}” is not a user id."]
        else:
            owner_id = int(text)
    if not access.can_view_billing:
        owner_id = access.user_id  # members and viewers: their own usage only
    if errors:
        raise ValidationError(errors)
    return ChargebackQuery(
        organization_id=organization.pk,
        start=start,
        end=end,
        group_by=group_by,
        labels=labels,
        owner_id=owner_id,
        project_id=project_id,
        instance_id=instance_id,
    )


# --- idle holders -------------------------------------------------------------------------------

IDLE_BELOW_PCT_DEFAULT = Decimal(10)
IDLE_MIN_HOURS_DEFAULT = Decimal(24)
_IDLE_MIN_HOURS_MAX = Decimal(RANGE_DAYS_MAX * 24 * 1000)  # a year of a thousand GPUs


@dataclass(frozen=True)
class IdleQuery:
    """chargeback_idle_holders' arguments, as keywords: chargeback_idle_holders(**asdict(q))."""

    organization_id: int
    start: date
    end: date  # exclusive
    below_pct: Decimal
    min_hours: Decimal
    owner_id: int | None = None


def _number(params: Mapping, name: str, default: Decimal, low: Decimal, high: Decimal, errors: dict) -> Decimal:
    text = _one(params, name)
    if not text:
        return default
    try:
        value = Decimal(text[:40])
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not low <= value <= high:
        errors[name] = [f"“{text[:_SHOWN]}” is not a number from {low} to {high}."]
        return default
    return value


def chargeback_idle_query_from_params(
    *, organization: Organization, access: OrgAccess, params: Mapping, today: date | None = None
) -> IdleQuery:
    """start/end/month as for the report; below_pct (0-100, default 10) and min_hours (GPU-hours
    held, default 24). Members and viewers see only their own instances."""
    today = today or datetime.now(tz=UTC).date()
    errors: dict[str, list[str]] = {}
    start, end = _range(params, today, errors)
    below = _number(params, "below_pct", IDLE_BELOW_PCT_DEFAULT, Decimal(0), Decimal(100), errors)
    hours = _number(params, "min_hours", IDLE_MIN_HOURS_DEFAULT, Decimal(0), _IDLE_MIN_HOURS_MAX, errors)
    if errors:
        raise ValidationError(errors)
    return IdleQuery(
        organization_id=organization.pk,
        start=start,
        end=end,
        below_pct=below,
        min_hours=hours,
        owner_id=None if access.can_view_billing else access.user_id,
    )
