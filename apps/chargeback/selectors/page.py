"""Reads the chargeback pages need besides the report itself: the label keys the group-by select
offers, and the credits applied on the range's invoices (shown apart from the groups' costs)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.db.models import Func, Sum

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import projects_list
from apps.billing.models import InvoiceStatus
from apps.billing.selectors.invoices import invoices_list
from apps.instances.selectors import instances_list

from ..models import RollupCursor
from ..services.rollup import RECORDS


def chargeback_label_keys(*, access: OrgAccess, own_only: bool) -> list[str]:
    """Every label key on the organization's projects and on the instances the viewer may see.
    Two queries, read in the database (jsonb_object_keys), not one row per instance."""
    keys_of = Func("labels", function="jsonb_object_keys")
    projects = projects_list(organization=access.organization).exclude(labels={})
    instances = instances_list(access=access).exclude(labels={})
    if own_only:
        instances = instances.filter(owner_id=access.user_id)
    keys = set(projects.annotate(key=keys_of).values_list("key", flat=True).distinct())
    keys |= set(instances.annotate(key=keys_of).values_list("key", flat=True).order_by().distinct())
    return sorted(keys)


def chargeback_credits_applied(*, access: OrgAccess, start: date, end: date) -> Decimal | None:
    """Credits applied on the invoices whose whole period lies in [start, end) (UTC days), for
    billing roles only (None for others): the groups' costs are usage before credits."""
    if not access.can_view_billing:
        return None
    invoices = invoices_list(access=access).filter(
        period_start__gte=datetime.combine(start, time.min, tzinfo=UTC),
        period_end__lte=datetime.combine(end, time.min, tzinfo=UTC),
    )
    total = invoices.exclude(status=InvoiceStatus.VOID).aggregate(credits=Sum("credits_applied"))["credits"]
    return total or Decimal("0.00")


def chargeback_rolled_up_at() -> datetime | None:
    """When the roll-up last folded usage records in (None before its first run). The pages say
    it: they show finished hours as of then, never the running hour, whose seconds the meter
    writes only once it ends (the billing overview shows them live)."""
    return RollupCursor.objects.filter(source=RECORDS).values_list("updated_at", flat=True).first()
