"""Idle holders: instances that held GPUs for long while barely using them (the GPU-hoarding view).

Over whole UTC days of the daily roll-up, per instance: allocated and used GPU-hours, their ratio
and what the instance cost over the range (the invoice's rule: per unit price rounded once).
Two queries whatever the number of rows: the aggregate, then the instances with their owner,
project and flavor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db import connection

from apps.instances.models import Instance

from ._sql import COST_SQL, subjects_sql, usage_where
from .measures import MILLI_PER_GPU_HOUR, GpuTimeMeasures, gpu_hours
from .names import user_display


@dataclass(frozen=True)
class IdleHolder(GpuTimeMeasures):
    instance_id: object  # UUID
    instance_name: str
    instance_state: str
    owner_id: int
    owner_name: str
    project_id: int
    project_name: str
    flavor_name: str
    allocated_milli_seconds: int
    used_milli_seconds: int
    cost: Decimal
    currency: str

    # allocated_gpu_hours, used_gpu_hours, utilisation_pct: GpuTimeMeasures's (an idle holder held
    # something, so its allocated is never 0 and its utilisation never None).

    @property
    def wasted_gpu_hours(self) -> Decimal:
        return gpu_hours(self.allocated_milli_seconds - self.used_milli_seconds)


def chargeback_idle_holders(
    *,
    organization_id: int,
    start: date,
    end: date,
    below_pct: Decimal | int | float | str,
    min_hours: Decimal | int | float | str,
    owner_id: int | None = None,
    limit: int | None = None,
) -> list[IdleHolder]:
    """Instances of the organization whose GPU utilisation over the UTC days [start, end) stayed
    below `below_pct` percent while they held at least `min_hours` GPU-hours, most wasted
    GPU-hours (allocated − used) first. `owner_id`: only that user's instances."""
    below = Decimal(str(below_pct))
    min_milli = int(Decimal(str(min_hours)) * MILLI_PER_GPU_HOUR)
    # Instances only. A reservation's rows hold all its GPUs but no used GPU-seconds (those land on
    # the rows of the instances that ran in it), and the daily rows do not say which instances ran
    # in which reservation (only billing's runs do, which selectors do not read), so a reservation
    # cannot be judged here: listed, even a busy one would look idle.
    where = usage_where(organization_id=organization_id, start=start, end=end, owner_id=owner_id, instances_only=True)
    subjects, params = subjects_sql(where)
    # Per instance: its subjects (one per unit price) each rounded once, added up. Idle when
    # used/allocated < below/100, said without division: used × 100 < below × allocated. Used
    # counts only subjects that allocated: an instance's runs inside a reservation (priced 0)
    # allocate nothing of their own (the reservation's row holds those GPUs), so their use would
    # otherwise lift the instance's ratio for its own hours.
    used_sql = "SUM(r.used_milli_seconds) FILTER (WHERE r.allocated_milli_seconds > 0)"
    sql = (
        f"SELECT r.instance_id, SUM(r.allocated_milli_seconds), COALESCE({used_sql}, 0), SUM({COST_SQL}), "
        f"MAX(r.currency) FROM ({subjects}) r GROUP BY r.instance_id "
        "HAVING SUM(r.allocated_milli_seconds) > 0 AND SUM(r.allocated_milli_seconds) >= %s "
        f"AND COALESCE({used_sql}, 0) * 100 < %s * SUM(r.allocated_milli_seconds) "
        f"ORDER BY SUM(r.allocated_milli_seconds) - COALESCE({used_sql}, 0) DESC, r.instance_id"
    )
    params = [*params, min_milli, below]
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        raw = cursor.fetchall()
    instances = Instance.objects.select_related("owner", "project", "flavor").in_bulk([r[0] for r in raw])
    holders = []
    for inst, allocated, used, cost, currency in raw:
        instance = instances[inst]
        holders.append(
            IdleHolder(
                instance_id=inst,
                instance_name=instance.name,
                instance_state=instance.state,
                owner_id=instance.owner_id,
                owner_name=user_display(instance.owner),
                project_id=instance.project_id,
                project_name=instance.project.name,
                flavor_name=instance.flavor.name,
                allocated_milli_seconds=int(allocated),
                used_milli_seconds=int(used),
                cost=Decimal(cost),
                currency=currency,
            )
        )
    return holders
