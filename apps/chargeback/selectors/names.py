"""Display names of group keys: one query per dimension of a report, whatever its row count."""

from __future__ import annotations

from collections.abc import Iterable

from apps.accounts.models import Project, User
from apps.capacity.models import Reservation
from apps.catalog.models import Flavor, Offering, Region
from apps.instances.models import Instance

from ._sql import LABEL_PREFIX

NONE_LABEL = "(none)"
RESERVATION_PREFIX = "reservation:"


def user_display(user: User | None) -> str:
    if user is None:
        return "(deleted user)"
    full = user.get_full_name()
    return f"{full} <{user.email}>" if full else user.email


def _int_ids(values: Iterable[str | None]) -> set[int]:
    return {int(v) for v in values if v is not None}


def dimension_names(dimension: str, values: Iterable[str | None]) -> dict[str | None, str]:
    """{key value: display name} for the values of one dimension; a value without a row (a
    deleted owner, no label) gets a stand-in, never an error."""
    values = set(values)
    names: dict[str | None, str] = {}
    if dimension.startswith(LABEL_PREFIX):
        return {v: (NONE_LABEL if v is None else v) for v in values}
    if dimension == "project":
        names = {str(p.pk): p.name for p in Project.objects.filter(pk__in=_int_ids(values)).only("name")}
    elif dimension == "owner":
        users = User.objects.filter(pk__in=_int_ids(values)).only("email", "first_name", "last_name")
        names = {str(u.pk): user_display(u) for u in users}
        names[None] = "(deleted user)"
    elif dimension in ("offering", "flavor", "region"):
        model = {"offering": Offering, "flavor": Flavor, "region": Region}[dimension]
        names = {str(o.pk): o.name for o in model.objects.filter(pk__in=_int_ids(values)).only("name")}
    elif dimension == "instance":
        instance_ids = [v for v in values if v and not v.startswith(RESERVATION_PREFIX)]
        reservation_ids = [v[len(RESERVATION_PREFIX) :] for v in values if v and v.startswith(RESERVATION_PREFIX)]
        names = {str(i.pk): i.name for i in Instance.objects.filter(pk__in=instance_ids).only("name")}
        if reservation_ids:
            for r in (
                Reservation.objects.filter(pk__in=reservation_ids).select_related("flavor").only("id", "flavor__name")
            ):
                names[f"{RESERVATION_PREFIX}{r.pk}"] = f"Reservation {str(r.pk)[:8]} ({r.flavor.name})"
    return {v: names.get(v, NONE_LABEL if v is None else f"#{v}") for v in values}
