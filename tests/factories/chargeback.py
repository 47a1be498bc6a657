"""Chargeback test data: daily roll-up rows written directly (the roll-up job has its own tests),
so a report's grouping, filters and rounding can be checked on figures chosen by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from apps.accounts.models import Organization, Project, Role, User
from apps.chargeback.models import UsageDay
from apps.instances.models import Instance
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.billing import InstanceFactory
from tests.factories.catalog import FlavorFactory, RegionFactory

GPU_HOUR_MILLI = 3_600_000  # one whole GPU for one hour, in thousandths of a GPU × seconds


def usage_day(
    *,
    instance: Instance,
    day: date,
    seconds: int,
    hourly_amount: Decimal | str = "1.00",
    currency: str = "USD",
    gpus: Decimal | str | int = 1,
    util_pct: Decimal | str | int = 50,
    **fields,
) -> UsageDay:
    """A day of `instance` at `hourly_amount`: `seconds` billed while holding `gpus` GPUs (0.5
    for a half slice) used at `util_pct` percent. Other fields (allocated_milli_seconds, …) may
    be given outright."""
    allocated = int(Decimal(seconds) * Decimal(str(gpus)) * 1000)
    defaults = {
        "organization_id": instance.organization_id,
        "project_id": instance.project_id,
        "owner_id": instance.owner_id,
        "offering_id": instance.offering_id,
        "flavor_id": instance.flavor_id,
        "region_id": instance.region_id,
        "currency": currency,
        "seconds": seconds,
        "allocated_milli_seconds": allocated,
        "used_milli_seconds": int(allocated * Decimal(str(util_pct)) / 100),
    }
    return UsageDay.objects.create(
        instance=instance, day=day, hourly_amount=Decimal(str(hourly_amount)), **{**defaults, **fields}
    )


@dataclass
class World:
    """One organization with two projects, an owner, two members, a viewer and a billing viewer,
    three instances, and another tenant with an instance of its own."""

    org: Organization
    owner: User
    alice: User
    bob: User
    viewer: User
    billing: User
    research: Project  # labels cost-centre=CC-1, team=ml
    web: Project  # no labels
    train: Instance  # research, alice: inherits cost-centre=CC-1
    tune: Instance  # research, bob: its own cost-centre=CC-2 overrides the project's
    serve: Instance  # web, alice: no cost-centre
    stranger_org: Organization
    stranger_instance: Instance


def chargeback_world() -> World:
    owner = UserFactory()
    org = OrganizationFactory(owner=owner, name="Acme")
    alice = UserFactory(first_name="Alice", last_name="Ng")
    bob, viewer, billing = UserFactory(), UserFactory(), UserFactory()
    for user, role in ((alice, Role.MEMBER), (bob, Role.MEMBER), (viewer, Role.VIEWER), (billing, Role.BILLING)):
        MembershipFactory(organization=org, user=user, role=role)
    research = Project.objects.create(
        organization=org, name="Research", slug="research", labels={"cost-centre": "CC-1", "team": "ml"}
    )
    web = Project.objects.create(organization=org, name="Web", slug="web")
    region = RegionFactory(name="US East")
    flavor = FlavorFactory(name="1x H100")
    half = FlavorFactory(name="Half H100", fraction=True)

    def instance(name, project, user, flavor, labels=None):
        return InstanceFactory(
            organization=org,
            project=project,
            owner=user,
            name=name,
            flavor=flavor,
            region=region,
            labels=labels or {},
        )

    stranger = UserFactory()
    stranger_org = OrganizationFactory(owner=stranger)
    return World(
        org=org,
        owner=owner,
        alice=alice,
        bob=bob,
        viewer=viewer,
        billing=billing,
        research=research,
        web=web,
        train=instance("train", research, alice, flavor),
        tune=instance("tune", research, bob, flavor, {"cost-centre": "CC-2"}),
        serve=instance("serve", web, alice, half),
        stranger_org=stranger_org,
        stranger_instance=InstanceFactory(
            organization=stranger_org, project=stranger_org.projects.first(), owner=stranger, name="theirs"
        ),
    )


def chargeback_november() -> World:
    """chargeback_world with the usage the report and API tests read, on 1 and 2 November 2026:
    train 1 h at 50 % then 2 h at 10 %, tune 1 h at 90 % (all at 2.00 on a whole GPU), serve
    half an hour on half a GPU at 1.00 and 20 %, and the stranger's instance 1 h at 5.00."""
    w = chargeback_world()
    nov1, nov2 = date(2026, 11, 1), date(2026, 11, 2)
    usage_day(instance=w.train, day=nov1, seconds=3600, hourly_amount="2.00", util_pct=50)
    usage_day(instance=w.train, day=nov2, seconds=7200, hourly_amount="2.00", util_pct=10)
    usage_day(instance=w.tune, day=nov1, seconds=3600, hourly_amount="2.00", util_pct=90)
    usage_day(instance=w.serve, day=nov1, seconds=1800, hourly_amount="1.00", gpus="0.5", util_pct=20)
    usage_day(instance=w.stranger_instance, day=nov1, seconds=3600, hourly_amount="5.00")
    return w
