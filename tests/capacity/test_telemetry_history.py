"""GPU telemetry history: the telemetry report writes one sample per GPU and minute in its own
statement (the latest report of a minute wins), the prune keeps the retention, and the selectors
give chart series with gaps where nothing was reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from apps.capacity.models import Gpu, GpuSample
from apps.capacity.selectors.telemetry import gpu_series_get, region_utilisation_get
from apps.capacity.services.reports import ReportRejected, node_telemetry_apply
from apps.capacity.services.telemetry import gpu_samples_prune
from apps.capacity.tasks import gpu_samples_prune as gpu_samples_prune_task
from tests.factories.accounts import UserFactory
from tests.factories.capacity import node_with_gpus
from tests.factories.catalog import GpuModelFactory, RegionFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 4, 10, 15, 0, tzinfo=UTC)


@pytest.fixture
def node():
    return node_with_gpus(RegionFactory(name="Frankfurt"), GpuModelFactory(), n=2)


def _report(node, seq, at, util, mem_gib):
    gpus = [{"uuid": g.uuid, "utilization_pct": util + g.index, "memory_used_bytes": (mem_gib + g.index) * 2**30}
            for g in node.gpus.order_by("index")]
    return node_telemetry_apply(node=node, seq=seq, telemetry={"collected_at": at, "gpus": gpus})


def _samples(node):
    return list(GpuSample.objects.filter(gpu__node=node).order_by("gpu__index", "minute").values_list(
        "gpu__index", "minute", "utilization_pct", "memory_used_bytes"))


def test_two_reports_in_a_minute_leave_one_sample_per_gpu_with_the_latest_values(node):
    # Given two reports within one minute and one in the next
    _report(node, 1, T0 + timedelta(seconds=5), util=10, mem_gib=1)
    _report(node, 2, T0 + timedelta(seconds=55.5), util=70, mem_gib=3)
    _report(node, 3, T0 + timedelta(minutes=1, seconds=2), util=40, mem_gib=2)

    # Then each GPU has one row per minute, holding the minute's last report
    assert _samples(node) == [
        (0, T0, 70, 3 * 2**30), (0, T0 + timedelta(minutes=1), 40, 2 * 2**30),
        (1, T0, 71, 4 * 2**30), (1, T0 + timedelta(minutes=1), 41, 3 * 2**30),
    ]
    # And the latest values are on the GPU rows as before
    assert list(node.gpus.order_by("index").values_list("utilization_pct", flat=True)) == [40, 41]


def test_a_stale_report_writes_no_sample(node):
    _report(node, 5, T0, util=10, mem_gib=1)
    with pytest.raises(ReportRejected):
        _report(node, 4, T0 + timedelta(seconds=20), util=99, mem_gib=9)
    assert [row[2] for row in _samples(node)] == [10, 11]


def test_the_report_stays_one_statement(node, django_assert_num_queries):
    gpus = [{"uuid": g.uuid, "utilization_pct": 5, "memory_used_bytes": 2**30} for g in node.gpus.all()]
    with django_assert_num_queries(1):
        assert node_telemetry_apply(node=node, seq=1, telemetry={"collected_at": T0, "gpus": gpus}) == 2
    assert len(_samples(node)) == 2


@override_settings(CAPACITY_TELEMETRY_RETENTION_DAYS=7)
def test_the_prune_deletes_only_samples_past_the_retention(node):
    # Given samples 8 days, 6 days and 1 minute old
    now = T0 + timedelta(days=8)
    for seq, at in enumerate([T0, T0 + timedelta(days=2), now - timedelta(minutes=1)], start=1):
        _report(node, seq, at, util=seq, mem_gib=1)

    # When the prune runs (twice: it is idempotent)
    assert gpu_samples_prune(now=now) == 2
    assert gpu_samples_prune(now=now) == 0

    # Then only the 8-day-old minute is gone
    assert sorted({row[1] for row in _samples(node)}) == [T0 + timedelta(days=2), now - timedelta(minutes=1)]


def test_the_beat_task_prunes_with_the_default_retention(node):
    _report(node, 1, datetime.now(UTC) - timedelta(days=30), util=1, mem_gib=1)
    _report(node, 2, datetime.now(UTC), util=2, mem_gib=1)
    assert gpu_samples_prune_task() == 2
    assert [row[2] for row in _samples(node)] == [2, 3]


def test_series_have_a_value_per_minute_and_gaps_where_nothing_came(node):
    _report(node, 1, T0 + timedelta(seconds=10), util=20, mem_gib=4)
    _report(node, 2, T0 + timedelta(minutes=2, seconds=10), util=60, mem_gib=8)
    gpu0, gpu1 = node.gpus.order_by("index")

    series = gpu_series_get(gpu_ids=[gpu0.pk], since=T0 - timedelta(seconds=30), until=T0 + timedelta(minutes=3))

    assert series.minutes == [T0 + timedelta(minutes=i) for i in range(4)]
    assert series.utilization_pct == {gpu0.pk: [20, None, 60, None]}  # gpu1 was not asked for
    assert series.memory_used_bytes[gpu0.pk] == [4 * 2**30, None, 8 * 2**30, None]


def test_region_utilisation_is_the_average_of_its_gpus_per_minute(node, django_assert_num_queries):
    other = node_with_gpus(RegionFactory(name="Oslo"), GpuModelFactory(), n=1)
    _report(node, 1, T0, util=10, mem_gib=1)  # 10 and 11 in Frankfurt
    _report(other, 1, T0 + timedelta(minutes=1), util=90, mem_gib=1)

    with django_assert_num_queries(1):
        series = region_utilisation_get(since=T0, until=T0 + timedelta(minutes=1, seconds=30))

    assert series.utilization_pct == {"Frankfurt": [10.5, None], "Oslo": [None, 90.0]}


def test_a_gpu_removed_takes_its_history_with_it(node):
    _report(node, 1, T0, util=10, mem_gib=1)
    Gpu.objects.filter(node=node, index=0).delete()
    assert [row[0] for row in _samples(node)] == [1]


def test_the_inventory_page_charts_utilisation_per_region(client, node):
    client.force_login(UserFactory(is_staff=True))
    # Given no samples, the chart says so
    assert "No data yet." in client.get("/ops/").content.decode()
    # When a region's GPUs report
    _report(node, 1, datetime.now(UTC) - timedelta(minutes=3), util=50, mem_gib=1)
    html = client.get("/ops/").content.decode()
    # Then one line per region, outside the live inventory partial
    assert 'data-testid="region-utilisation"' in html and 'id="chart-data-region-utilisation"' in html
    assert '"label": "Frankfurt"' in html and "50.5" in html
