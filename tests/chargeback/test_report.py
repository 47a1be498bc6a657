"""Chargeback report selectors over daily roll-up rows written by hand: grouping by each dimension
and by pairs, effective-label filters (an instance's label over its project's), the owner filter,
the invoice's rounding rule, the daily series, idle holders, the parameter parser, and a query
count that does not grow with the rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.roles import OrgAccess
from apps.capacity.models import Reservation, ReservationState
from apps.chargeback.models import UsageDay
from apps.chargeback.selectors.idle import chargeback_idle_holders
from apps.chargeback.selectors.params import chargeback_query_from_params
from apps.chargeback.selectors.report import (
    ChargebackQuery,
    chargeback_daily,
    chargeback_report,
)
from tests.factories.billing import InstanceFactory
from tests.factories.chargeback import chargeback_november, chargeback_world, usage_day

pytestmark = pytest.mark.django_db

NOV1, NOV2, DEC1 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 12, 1)


@pytest.fixture
def world():
    return chargeback_november()


def report(w, **query):
    return chargeback_report(query=ChargebackQuery(organization_id=w.org.pk, start=NOV1, end=DEC1, **query))


def costs(rep) -> dict[tuple[str, ...], Decimal]:
    return {tuple(k.name for k in row.keys): row.cost for row in rep.rows}


def test_ungrouped_is_one_row_equal_to_the_total_of_this_tenant_only(world):
    rep = report(world)
    assert [r.cost for r in rep.rows] == [Decimal("8.50")]
    assert rep.total.cost == Decimal("8.50")
    assert rep.total.seconds == 3600 + 7200 + 3600 + 1800
    assert rep.total.allocated_gpu_hours == Decimal("4.25")  # 3 + 1 whole GPU-hours, half a GPU for half an hour
    assert rep.currency == "USD"


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("project", {("Research",): "8.00", ("Web",): "0.50"}),
        ("instance", {("train",): "6.00", ("tune",): "2.00", ("serve",): "0.50"}),
        ("flavor", {("1x H100",): "8.00", ("Half H100",): "0.50"}),
        ("region", {("US East",): "8.50"}),
        ("label:cost-centre", {("CC-1",): "6.00", ("CC-2",): "2.00", ("(none)",): "0.50"}),
        ("label:team", {("ml",): "8.00", ("(none)",): "0.50"}),
    ],
)
def test_grouping_by_one_dimension_names_each_group_and_adds_up(world, group_by, expected):
    rep = report(world, group_by=(group_by,))
    assert costs(rep) == {k: Decimal(v) for k, v in expected.items()}
    assert sum(r.cost for r in rep.rows) == rep.total.cost == Decimal("8.50")


def test_grouping_by_owner_shows_name_and_email(world):
    rep = report(world, group_by=("owner",))
    assert costs(rep) == {
        (f"Alice Ng <{world.alice.email}>",): Decimal("6.50"),
        (world.bob.email,): Decimal("2.00"),
    }
    assert rep.rows[0].keys[0].value == str(world.alice.pk)


def test_grouping_by_offering_uses_offering_names(world):
    rep = report(world, group_by=("offering",))
    assert {k[0] for k in costs(rep)} == {world.train.offering.name, world.serve.offering.name}


def test_grouping_by_a_pair_gives_every_combination_biggest_first(world):
    rep = report(world, group_by=("project", "owner"))
    assert [(tuple(k.name for k in r.keys), r.cost) for r in rep.rows] == [
        (("Research", f"Alice Ng <{world.alice.email}>"), Decimal("6.00")),
        (("Research", world.bob.email), Decimal("2.00")),
        (("Web", f"Alice Ng <{world.alice.email}>"), Decimal("0.50")),
    ]
    assert rep.total.cost == Decimal("8.50")


def test_label_filter_uses_the_instance_label_over_the_project_label(world):
    # tune's own cost-centre=CC-2 overrides research's CC-1, so only train is CC-1.
    assert costs(report(world, group_by=("instance",), labels=(("cost-centre", "CC-1"),))) == {
        ("train",): Decimal("6.00")
    }
    assert costs(report(world, group_by=("instance",), labels=(("cost-centre", "CC-2"),))) == {
        ("tune",): Decimal("2.00")
    }
    # team is only the project's: both research instances inherit it.
    assert report(world, labels=(("team", "ml"),)).total.cost == Decimal("8.00")
    assert report(world, labels=(("team", "ml"), ("cost-centre", "CC-2"))).total.cost == Decimal("2.00")


def test_owner_filter_keeps_only_that_users_usage(world):
    rep = report(world, group_by=("instance",), owner_id=world.alice.pk)
    assert costs(rep) == {("train",): Decimal("6.00"), ("serve",): Decimal("0.50")}
    assert report(world, owner_id=world.stranger_instance.owner_id).rows == []


def test_drill_down_to_a_project_and_an_instance(world):
    assert report(world, project_id=world.web.pk).total.cost == Decimal("0.50")
    assert report(world, instance_id=world.train.pk).total.cost == Decimal("6.00")


def test_range_is_whole_days_end_exclusive(world):
    rep = chargeback_report(query=ChargebackQuery(organization_id=world.org.pk, start=NOV2, end=DEC1))
    assert rep.total.cost == Decimal("4.00")
    rep = chargeback_report(query=ChargebackQuery(organization_id=world.org.pk, start=NOV1, end=NOV2))
    assert rep.total.cost == Decimal("4.50")


def test_measures_hours_gpu_hours_and_utilisation(world):
    rows = {r.keys[0].name: r for r in report(world, group_by=("instance",)).rows}
    serve = rows["serve"]
    assert serve.hours == Decimal("0.5")
    assert serve.allocated_gpu_hours == Decimal("0.25")  # half a GPU for half an hour
    assert serve.used_gpu_hours == Decimal("0.05")
    assert serve.utilisation_pct == Decimal("20.0")
    train = rows["train"]  # 1 h at 50 % then 2 h at 10 %: 0.7 of 3 GPU-hours
    assert train.used_gpu_hours == Decimal("0.7")
    assert train.utilisation_pct == Decimal("23.3")


# --- the invoice's rounding rule ----------------------------------------------------------------


def test_each_subject_is_rounded_once_and_groups_are_sums_of_rounded_costs(db):
    # Given three instances of one project, each a third of a cent (1 s at $12/h)
    w = chargeback_world()
    thirds = [InstanceFactory(organization=w.org, project=w.web, owner=w.alice) for _ in range(3)]
    for inst in thirds:
        usage_day(instance=inst, day=NOV1, seconds=1, hourly_amount="12.00")
    # When the project's cost is read
    rep = report(w, group_by=("project",))
    # Then each rounds to 0.00 on its own, as its invoice line does: the group is 0.00, not 0.01
    assert costs(rep) == {("Web",): Decimal("0.00")}
    assert rep.total.cost == Decimal("0.00")
    assert [r.cost for r in report(w, group_by=("instance",)).rows] == [Decimal("0.00")] * 3


def test_two_thirds_round_up_each_and_half_a_cent_rounds_up(db):
    w = chargeback_world()
    two_thirds = [InstanceFactory(organization=w.org, project=w.web, owner=w.alice) for _ in range(3)]
    for inst in two_thirds:
        usage_day(instance=inst, day=NOV1, seconds=2, hourly_amount="12.00")  # 0.00666… each
    half = InstanceFactory(organization=w.org, project=w.research, owner=w.bob)
    usage_day(instance=half, day=NOV1, seconds=3, hourly_amount="6.00")  # exactly 0.005
    rep = report(w, group_by=("project",))
    assert costs(rep) == {("Web",): Decimal("0.03"), ("Research",): Decimal("0.01")}
    assert rep.total.cost == Decimal("0.04")


def test_a_currency_without_minor_units_rounds_to_whole_units(db):
    # Half a yen (1 s at 1,800 JPY/h) rounds up to 1, as money_round does for JPY.
    w = chargeback_world()
    usage_day(instance=w.train, day=NOV1, seconds=1, hourly_amount="1800", currency="JPY")
    rep = report(w)
    assert (rep.total.cost, rep.currency) == (Decimal("1"), "JPY")


def test_days_of_one_subject_are_added_before_rounding(db):
    # A third of a cent on each of three days is one cent for the month, like one invoice line.
    w = chargeback_world()
    for day in (1, 2, 3):
        usage_day(instance=w.train, day=date(2026, 11, day), seconds=1, hourly_amount="12.00")
    assert report(w).total.cost == Decimal("0.01")


def test_two_prices_of_one_instance_are_two_subjects(db):
    w = chargeback_world()
    usage_day(instance=w.train, day=NOV1, seconds=1, hourly_amount="12.00")
    usage_day(instance=w.train, day=NOV2, seconds=1, hourly_amount="12.000001")
    assert report(w).total.cost == Decimal("0.00")


def test_a_negative_correction_is_taken_off_before_rounding(db):
    w = chargeback_world()
    usage_day(instance=w.train, day=NOV1, seconds=3600, hourly_amount="3.00")
    usage_day(instance=w.train, day=NOV2, seconds=-1800, hourly_amount="3.00", allocated_milli_seconds=0)
    assert report(w).total.cost == Decimal("1.50")


# --- the daily series ---------------------------------------------------------------------------


def test_daily_series_per_first_dimension_covers_every_day(world):
    daily = chargeback_daily(
        query=ChargebackQuery(
            organization_id=world.org.pk, start=NOV1, end=date(2026, 11, 4), group_by=("project", "owner")
        )
    )
    assert daily.days == [NOV1, NOV2, date(2026, 11, 3)]
    assert [(s.name, s.cost) for s in daily.series] == [
        ("Research", [Decimal("4.00"), Decimal("4.00"), Decimal("0")]),
        ("Web", [Decimal("0.50"), Decimal("0"), Decimal("0")]),
    ]
    assert daily.series[0].allocated_gpu_hours[:2] == [Decimal("2"), Decimal("2")]


def test_daily_without_groups_is_one_total_series_and_top_folds_the_rest(world):
    query = ChargebackQuery(organization_id=world.org.pk, start=NOV1, end=NOV2)
    assert [(s.name, s.cost) for s in chargeback_daily(query=query).series] == [("Total", [Decimal("4.50")])]
    query = ChargebackQuery(organization_id=world.org.pk, start=NOV1, end=NOV2, group_by=("instance",))
    series = chargeback_daily(query=query, top=1).series
    assert [(s.name, s.cost) for s in series] == [("train", [Decimal("2.00")]), ("Other", [Decimal("2.50")])]


# --- idle holders -------------------------------------------------------------------------------


def test_idle_holders_are_low_utilisation_long_holders_most_wasted_first(world):
    holders = chargeback_idle_holders(organization_id=world.org.pk, start=NOV1, end=DEC1, below_pct=30, min_hours=0.2)
    # train: 3 GPU-h at 23.3 %; serve: 0.25 GPU-h at 20 %; tune is busy (90 %).
    assert [(h.instance_name, h.wasted_gpu_hours, h.cost) for h in holders] == [
        ("train", Decimal("2.3"), Decimal("6.00")),
        ("serve", Decimal("0.2"), Decimal("0.50")),
    ]
    assert holders[0].owner_name == f"Alice Ng <{world.alice.email}>"
    assert (holders[0].project_name, holders[0].flavor_name) == ("Research", "1x H100")
    assert holders[0].utilisation_pct == Decimal("23.3")


def test_idle_holders_respect_min_hours_and_owner(world):
    long_only = chargeback_idle_holders(organization_id=world.org.pk, start=NOV1, end=DEC1, below_pct=30, min_hours=1)
    assert [h.instance_name for h in long_only] == ["train"]
    bobs = chargeback_idle_holders(
        organization_id=world.org.pk, start=NOV1, end=DEC1, below_pct=100, min_hours=0, owner_id=world.bob.pk
    )
    assert [h.instance_name for h in bobs] == ["tune"]


# --- query counts -------------------------------------------------------------------------------


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


@pytest.mark.parametrize("group_by", [("instance", "owner"), ("project", "label:cost-centre"), ("flavor", "region")])
def test_query_count_does_not_grow_with_rows(world, group_by):
    def run():
        report(world, group_by=group_by)
        chargeback_daily(query=ChargebackQuery(organization_id=world.org.pk, start=NOV1, end=DEC1, group_by=group_by))
        chargeback_idle_holders(organization_id=world.org.pk, start=NOV1, end=DEC1, below_pct=100, min_hours=0)

    few = _queries(run)
    for n in range(12):
        inst = InstanceFactory(
            organization=world.org, project=world.web, owner=world.bob, labels={"cost-centre": f"X{n}"}
        )
        usage_day(instance=inst, day=NOV2, seconds=60 * (n + 1))
    many = _queries(run)
    assert many == few
    assert few <= 9  # report 3, daily 2, idle 2 (+ a reservation lookup for the instance dimension)


# --- the request parameters ---------------------------------------------------------------------


def _parse(w, role="owner", user=None, **params):
    access = OrgAccess(organization=w.org, role=role, user_id=(user or w.owner).pk)
    return chargeback_query_from_params(organization=w.org, access=access, params=params, today=date(2026, 11, 20))


def test_params_give_a_query_with_an_inclusive_end(world):
    q = _parse(world, start="2026-11-01", end="2026-11-30", group_by="project,label:cost-centre", label="team=ml")
    assert (q.start, q.end) == (NOV1, DEC1)
    assert q.group_by == ("project", "label:cost-centre")
    assert q.labels == (("team", "ml"),)
    assert q.owner_id is None


def test_params_default_to_this_month_so_far_and_take_a_month(world):
    q = _parse(world)
    assert (q.start, q.end) == (NOV1, date(2026, 11, 21))
    q = _parse(world, month="2026-02")
    assert (q.start, q.end) == (date(2026, 2, 1), date(2026, 3, 1))


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_only_ever_get_their_own_rows(world, role):
    q = _parse(world, role=role, user=world.alice, owner=str(world.bob.pk))
    assert q.owner_id == world.alice.pk


def test_billing_may_drill_down_to_a_project_and_an_owner(world):
    q = _parse(world, role="billing", user=world.billing, project="web", owner=str(world.bob.pk))
    assert (q.project_id, q.owner_id) == (world.web.pk, world.bob.pk)


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"start": "2026-13-01"}, "start", "is not a date"),
        ({"end": "yesterday"}, "end", "is not a date"),
        ({"start": "2026-11-10", "end": "2026-11-01"}, "end", "before it starts"),
        ({"start": "2025-01-01", "end": "2026-11-01"}, "end", "at most 366 days"),
        ({"month": "2026-13"}, "month", "is not a month"),
        ({"month": "2026-11", "start": "2026-11-01"}, "month", "not both"),
        ({"group_by": "colour"}, "group_by", "Unknown dimension"),
        ({"group_by": "project,owner,region"}, "group_by", "at most 2"),
        ({"group_by": "project,project"}, "group_by", "twice"),
        ({"group_by": "label:Bad Key"}, "group_by", "Unknown dimension"),
        ({"label": "cost-centre"}, "label", "is not key=value"),
        ({"label": "a=1,a=2"}, "label", "given twice"),
        ({"project": "nope"}, "project", "No project"),
        ({"instance": "not-a-uuid"}, "instance", "not an instance id"),
        ({"owner": "x1"}, "owner", "not a user id"),
    ],
)
def test_bad_params_are_a_validation_error_naming_the_parameter(world, params, field, reason):
    with pytest.raises(ValidationError) as exc:
        _parse(world, **params)
    assert reason in " ".join(exc.value.message_dict[field])


def test_a_project_of_another_tenant_is_unknown(world):
    with pytest.raises(ValidationError):
        _parse(world, project=world.stranger_org.projects.first().slug + "-x")
    stranger_project_slug = "default"  # both organizations have one: the caller's own is meant
    assert _parse(world, project=stranger_project_slug).project_id == world.org.projects.get(slug="default").pk


# --- reservations -------------------------------------------------------------------------------


def test_a_reservation_is_a_subject_of_its_own_with_its_projects_labels(world):
    # Given a reservation of the research project, booked by bob, charged for a day
    reservation = Reservation.objects.create(
        organization=world.org,
        project=world.research,
        flavor=world.train.flavor,
        region=world.train.region,
        gpu_model_id=world.train.flavor.gpu_model_id,
        gpus=1,
        starts_at=datetime(2026, 11, 1, tzinfo=UTC),
        ends_at=datetime(2026, 11, 2, tzinfo=UTC),
        state=ReservationState.ENDED,
        units=1,
        hourly_amount=Decimal("1.00"),
        currency="USD",
        created_by=world.bob,
    )
    UsageDay.objects.create(
        organization=world.org,
        project=world.research,
        owner=world.bob,
        reservation=reservation,
        offering=world.train.offering,
        flavor=world.train.flavor,
        region=world.train.region,
        hourly_amount=Decimal("1.00"),
        currency="USD",
        seconds=86400,
        allocated_milli_seconds=86_400_000,
        day=NOV1,
    )
    # When grouped by instance, and filtered by the project's label
    rows = {r.keys[0].value: r for r in report(world, group_by=("instance",)).rows}
    key = f"reservation:{reservation.pk}"
    # Then it is its own row, named as a reservation, and it carries the project's labels
    assert rows[key].cost == Decimal("24.00")
    assert rows[key].keys[0].name == f"Reservation {str(reservation.pk)[:8]} ({world.train.flavor.name})"
    assert report(world, labels=(("cost-centre", "CC-1"),)).total.cost == Decimal("30.00")  # train + it
    assert costs(report(world, group_by=("owner",)))[(world.bob.email,)] == Decimal("26.00")
    # and idle holders list instances only
    holders = chargeback_idle_holders(organization_id=world.org.pk, start=NOV1, end=DEC1, below_pct=100, min_hours=0)
    assert all(h.instance_name != key for h in holders) and len(holders) == 3
