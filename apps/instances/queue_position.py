"""Where a queued launch stands: its place in its line (region and flavor, first come first
served, as services.queue places them) and what it waits for, for its page. A read, scoped by
the instance the page already scoped to its organization; counts only, never another tenant's
instances."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from apps.capacity.selectors.availability import flavor_availability, flavor_capacity_total

from .models import Instance, InstanceState


@dataclass(frozen=True)
class QueuePosition:
    position: int  # 1 = next to be placed
    free: int  # of the flavor in the region, now
    total: int  # of the flavor the region's ready nodes could hold at all
    what: str  # e.g. "1 × NVIDIA H100 80GB SXM"
    region_code: str

    @property
    def ordinal(self) -> str:
        n = self.position
        suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"


def instance_queue_position(*, instance: Instance) -> QueuePosition | None:
    """None unless `instance` is queued."""
    if instance.state != InstanceState.QUEUED:
        return None
    ahead = Instance.objects.filter(
        Q(state_changed_at__lt=instance.state_changed_at)
        | Q(state_changed_at=instance.state_changed_at, pk__lt=instance.pk),
        state=InstanceState.QUEUED,
        region_id=instance.region_id,
        flavor_id=instance.flavor_id,
    ).count()
    flavor, region = instance.flavor, instance.region
    return QueuePosition(
        position=ahead + 1,
        free=flavor_availability(flavors=[flavor], region=region).get(flavor.pk, 0),
        total=flavor_capacity_total(flavor=flavor, region=region),
        what=flavor.accelerator_label,
        region_code=region.code,
    )
