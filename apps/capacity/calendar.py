"""The capacity calendar's charts, built from reservations already read (no queries here), for
static/js/reservation_calendar.js (vendored Chart.js, on a linear time axis in epoch ms: the
toolkit's `{% chart %}` has a category axis, which would space uneven change points evenly):

- a Gantt: one floating bar per reservation from its start to its end, coloured by state, with a
  "now" marker;
- the operators' load per region and GPU model: GPUs reserved, a step at each change point,
  against the fleet's capacity line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import BOOKED_RESERVATION_STATES, Reservation
from .selectors.reservations import FleetCapacity, demand


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def calendar_range(
    *, reservations: Sequence[Reservation], now: datetime, ahead: timedelta
) -> tuple[datetime, datetime]:
    """The span a calendar shows: from an hour ago (or the earliest start of what it shows, at
    most a day back) to the latest end (at least a day ahead, at most `ahead`), so a short
    window is not a hairline on a month-wide axis."""
    since = max(min([now - timedelta(hours=1), *(r.starts_at for r in reservations)]), now - timedelta(days=1))
    until = min(max([now + timedelta(days=1), *(r.ends_at for r in reservations)]), now + ahead)
    margin = (until - since) / 40
    return since - margin, until + margin


def gantt_spec(
    *,
    reservations: Sequence[Reservation],
    since: datetime,
    until: datetime,
    now: datetime,
    with_organization: bool = False,
) -> dict:
    bars = []
    for r in reservations:
        who = f"{r.organization.name} · " if with_organization else ""
        bars.append(
            {
                "label": f"{who}{r.what} · {r.region.code}",
                "start": _ms(max(r.starts_at, since)),
                "end": _ms(min(r.ends_at, until)),
                "state": r.state,
                "stateLabel": r.get_state_display(),
            }
        )
    # Room for every bar's label: the canvas grows with the rows.
    height = 80 + 28 * len(bars)
    return {"bars": bars, "since": _ms(since), "until": _ms(until), "now": _ms(now), "height": height}


@dataclass(frozen=True)
class PoolLoad:
    """One region × GPU model of the operators' view: its reservations and the load chart."""

    key: str
    region_code: str
    gpu_model_name: str
    fleet: FleetCapacity
    reservations: list[Reservation]
    load: dict
    gantt: dict
    peak_reserved_gpus: int


def _load_points(
    *, reservations: Iterable[Reservation], fleet: FleetCapacity, since: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """GPUs reserved from each change point on (whole nodes counted as the largest nodes, as
    booking counts them)."""
    booked = [r for r in reservations if r.state in BOOKED_RESERVATION_STATES]
    points = sorted({since} | {t for r in booked for t in (r.starts_at, r.ends_at) if since < t < until})
    load = []
    for moment in points:
        gpus, nodes = demand(r for r in booked if r.starts_at <= moment < r.ends_at)
        needed = fleet.gpus_needed(gpus=gpus, nodes=nodes)
        load.append((moment, needed if needed is not None else gpus + sum(s * n for s, n in nodes.items())))
    return load


def pools_load(
    *,
    reservations: Sequence[Reservation],
    fleets: dict[tuple[int, int], FleetCapacity],
    since: datetime,
    until: datetime,
    now: datetime,
) -> list[PoolLoad]:
    """Per region × GPU model with a fleet or a reservation in the range, in region, model order."""
    grouped: dict[tuple[int, int], list[Reservation]] = defaultdict(list)
    for r in reservations:
        grouped[(r.region_id, r.gpu_model_id)].append(r)
    names = {(r.region_id, r.gpu_model_id): (r.region.code, r.gpu_model.name) for r in reservations}
    pools = []
    for key in sorted(set(grouped), key=lambda k: names[k]):
        fleet = fleets.get(key, FleetCapacity(node_gpus=()))
        members = grouped[key]
        load = _load_points(reservations=members, fleet=fleet, since=since, until=until)
        load.append((until, load[-1][1] if load else 0))
        chart = {
            "points": [[_ms(moment), gpus] for moment, gpus in load],
            "capacity": fleet.gpus,
            "since": _ms(since),
            "until": _ms(until),
            "now": _ms(now),
        }
        region_code, model_name = names[key]
        pools.append(
            PoolLoad(
                key=f"{region_code}-{key[1]}",
                region_code=region_code,
                gpu_model_name=model_name,
                fleet=fleet,
                reservations=members,
                load=chart,
                gantt=gantt_spec(reservations=members, since=since, until=until, now=now, with_organization=True),
                peak_reserved_gpus=max((n for _, n in load), default=0),
            )
        )
    return pools
