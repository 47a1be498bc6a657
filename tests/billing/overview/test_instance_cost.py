"""The instance page's cost (billing_instances): while it runs, this run so far and the total of
all its runs; once it is not running, the total alone, with nothing ticking."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances.models import InstanceState
from tests.factories.billing import InstanceFactory, run_open, run_record

pytestmark = pytest.mark.django_db



def _cost(client, org, instance) -> str:
    return client.get(f"/orgs/{org.slug}/instances/{instance.pk}/cost/").content.decode()


def _testid(html, name) -> str:
    return re.search(rf'data-testid="{name}">([^<]*)<', html).group(1)


def test_a_running_instance_shows_this_run_and_its_total(owner_client, org):
    # Given an instance that ran an hour at $3.60/h before, and runs again for 100 s at the same price
    instance = InstanceFactory(organization=org, state=InstanceState.RUNNING)
    past = timezone.now() - timedelta(days=1)
    run_record(instance=instance, started_at=past, ended_at=past + timedelta(hours=1), hourly_amount="3.60")
    run_open(instance=instance, started_at=timezone.now() - timedelta(seconds=100), hourly_amount="3.60")

    html = _cost(owner_client, org, instance)

    # Then it shows this run ($0.10) ticking and the total ($3.60 + $0.10)
    assert "Running for 1m 4" in html and _testid(html, "run-cost") in ("$0.10", "$0.11")
    assert _testid(html, "total-cost") in ("$3.70", "$3.71")
    assert 'hx-trigger="every 5s"' in html


def test_a_stopped_instance_shows_its_total_and_no_running_line(owner_client, org):
    instance = InstanceFactory(organization=org)
    start = timezone.now() - timedelta(days=2)
    run_record(instance=instance, started_at=start, ended_at=start + timedelta(seconds=90), hourly_amount="36.00")
    run_record(instance=instance, started_at=start + timedelta(days=1),
               ended_at=start + timedelta(days=1, seconds=30), hourly_amount="36.00")

    html = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()

    assert "Running for" not in html and "hx-get=\"/orgs/" + org.slug + f"/instances/{instance.pk}/cost/" not in html
    assert _testid(html, "used-seconds") == "120" and _testid(html, "used-cost") == "$1.20"


def test_an_instance_no_longer_running_never_shows_a_stale_running_line(owner_client, org):
    # Given an instance on its way down whose run is still open (the stop closes it in a moment)
    instance = InstanceFactory(organization=org, state=InstanceState.STOPPING)
    run_open(instance=instance, started_at=timezone.now() - timedelta(seconds=60), hourly_amount="36.00")

    html = _cost(owner_client, org, instance)

    # Then it shows what was used, not a ticking run
    assert "Running for" not in html and "hx-trigger" not in html
    assert _testid(html, "used-cost") in ("$0.60", "$0.61")


def test_an_instance_that_never_ran_has_nothing_billed(owner_client, org):
    html = _cost(owner_client, org, InstanceFactory(organization=org))
    assert "Nothing billed yet" in html
