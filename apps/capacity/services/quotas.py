"""GPU quotas: a ceiling per organization (and optionally per project), and guaranteed capacity.

Usage is what live allocations (active and lost) hold, in thousandths of a GPU; a lost allocation
still counts because its capacity is still held until its node is back.

Guarantees are simplified. An organization's unused guarantee (guaranteed·1000 − its live usage
in all regions) is held back from every other organization: another organization's allocation is
refused when it would leave the region's free capacity (READY nodes, healthy GPUs, any GPU model,
in thousandths) below the sum of the other organizations' unused guarantees. Quota has no region,
so a guarantee is held back in each region rather than once in total, and neither fragmentation
nor GPU models are considered. Only organization-level guarantees reserve capacity against other
tenants; a project's guarantee is a split of its organization's own share and reserves nothing.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q, Sum

from apps.accounts.models import Organization, Project
from apps.catalog.models import Region

from ..errors import AllocationRefused, RefusalReason
from ..models import LIVE_ALLOCATION_STATES, WHOLE_GPU_MILLI, Allocation, Quota
from ..selectors.availability import region_free_milli

# pg_advisory_xact_lock(key1, key2) namespace for "allocations in region key2 while guarantees
# exist". Arbitrary, but fixed: allocations.py uses another for nodes.
GUARANTEE_REGION_LOCK = 0x6770_7251


def gpus_display(milli: int | Decimal) -> str:
    """Thousandths of a GPU as a count people read: 3500 → "3.5", 1000 → "1", 428 → "0.428"."""
    value = (Decimal(milli) / WHOLE_GPU_MILLI).normalize()
    return f"{value:f}"


@transaction.atomic
def quota_set(
    *,
    organization: Organization,
    max_gpus: Decimal,
    guaranteed_gpus: Decimal = Decimal(0),
    project: Project | None = None,
) -> Quota:
    """Create or replace the quota of an organization, or of one of its projects."""
    try:
        max_gpus, guaranteed_gpus = Decimal(str(max_gpus)), Decimal(str(guaranteed_gpus))
    except InvalidOperation:
        max_gpus = guaranteed_gpus = Decimal("NaN")
    if not (max_gpus.is_finite() and guaranteed_gpus.is_finite()):
        raise ValidationError("Give GPU counts as numbers.")
    errors = {}
    if max_gpus < 0:
        errors["max_gpus"] = "The GPU limit cannot be negative."
    if guaranteed_gpus < 0:
        errors["guaranteed_gpus"] = "The guarantee cannot be negative."
    elif guaranteed_gpus > max_gpus:
        errors["guaranteed_gpus"] = "The guarantee cannot be larger than the GPU limit."
    for field, value in (("max_gpus", max_gpus), ("guaranteed_gpus", guaranteed_gpus)):
        # The column holds 3 decimals (thousandths of a GPU, the allocator's unit) and 5 digits.
        if field not in errors and (value >= 100_000 or value != value.quantize(Decimal("0.001"))):
            errors[field] = "Give a number of GPUs below 100,000 with at most 3 decimals."
    if project is not None and project.organization_id != organization.pk:
        errors["project"] = "That project belongs to another organization."
    if errors:
        raise ValidationError(errors)
    quota, _ = Quota.objects.update_or_create(
        organization=organization,
        project=project,
        defaults={"max_gpus": max_gpus, "guaranteed_gpus": guaranteed_gpus},
    )
    return quota


def live_usage_milli(*, organization: Organization | None = None, project: Project | None = None) -> int:
    """Thousandths of a GPU held by the live allocations of an organization or a project."""
    column, value = ("project_id", project.pk) if project is not None else ("organization_id", organization.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT coalesce(sum(gpu_milli), 0) FROM {Allocation._meta.db_table} "
            f"WHERE {column} = %s AND state = ANY(%s)",
            [value, list(LIVE_ALLOCATION_STATES)],
        )
        return int(cursor.fetchone()[0])


def quota_check(*, organization: Organization, project: Project | None, gpu_milli: int, lock: bool = False) -> None:
    """Refuse with "quota_exceeded" if holding `gpu_milli` more would pass the organization's or
    the project's ceiling. No quota row means no ceiling.

    With `lock` (the allocator passes it, inside its transaction) the quota rows are locked first,
    so two concurrent requests of one organization or project are checked one after the other and
    cannot both pass on the same usage figure.
    """
    # SQL rather than the ORM: this runs on every placement, and building the ORM query costs
    # several times what PostgreSQL spends answering it.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT project_id, max_gpus FROM {Quota._meta.db_table} "
            "WHERE organization_id = %s AND (project_id IS NULL OR project_id = %s) ORDER BY id"
            + (" FOR UPDATE" if lock else ""),
            [organization.pk, project.pk if project is not None else None],
        )
        quotas = cursor.fetchall()
    for project_id, max_gpus in quotas:
        if project_id:
            used = live_usage_milli(project=project)
        else:
            used = live_usage_milli(organization=organization)
        if used + gpu_milli > max_gpus * WHOLE_GPU_MILLI:
            who = f"project {project.name} of {organization.name}" if project_id else organization.name
            ceiling = gpus_display(max_gpus * WHOLE_GPU_MILLI)
            raise AllocationRefused(
                RefusalReason.QUOTA_EXCEEDED,
                f"Quota exceeded: {who} may use at most {ceiling} {'GPU' if ceiling == '1' else 'GPUs'} "
                f"and holds {gpus_display(used)}; this needs {gpus_display(gpu_milli)}.",
            )


def reserved_for_others_milli(*, organization: Organization) -> int:
    """Unused guaranteed capacity of every other organization, in thousandths of a GPU."""
    rows = (
        Quota.objects.filter(project__isnull=True, guaranteed_gpus__gt=0)
        .exclude(organization=organization)
        .annotate(
            used=Sum(
                "organization__allocations__gpu_milli",
                filter=Q(organization__allocations__state__in=LIVE_ALLOCATION_STATES),
            )
        )
        .values_list("guaranteed_gpus", "used")
    )
    return int(sum(max(Decimal(0), guaranteed * WHOLE_GPU_MILLI - (used or 0)) for guaranteed, used in rows))


def guarantee_check(*, organization: Organization, region: Region, gpu_milli: int) -> None:
    """Refuse with "reserved_for_guarantees" if taking `gpu_milli` in `region` would leave less
    free than other organizations are guaranteed and not yet using.

    Free capacity is counted without regard to fragmentation or GPU model (the simplification
    above). When any guarantee exists, allocations in the region take one lock here and so run
    one at a time until they commit: the check reads capacity and other tenants' usage that no row
    lock of this organization protects. Without guarantees there is no lock and no cost.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {Quota._meta.db_table} WHERE project_id IS NULL AND guaranteed_gpus > 0)"
        )
        if not cursor.fetchone()[0]:
            return
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [GUARANTEE_REGION_LOCK, region.pk])
    reserved = reserved_for_others_milli(organization=organization)
    if not reserved:
        return
    free = region_free_milli(region=region)
    # When the request does not fit at all, the allocator's "no_capacity" is the truer answer.
    if gpu_milli <= free < gpu_milli + reserved:
        raise AllocationRefused(
            RefusalReason.RESERVED_FOR_GUARANTEES,
            # Other tenants' figures stay out of the message: only that capacity is spoken for.
            f"The free GPUs in {region.code} are reserved for other customers' guaranteed capacity right now; "
            "try a smaller size or another region.",
        )
