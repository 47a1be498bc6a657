"""The instance page's GPU usage charts: utilisation and memory of the instance's GPUs over the
last hour, from the telemetry history; with no samples they say so; another tenant gets 404."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.capacity.services.reports import node_telemetry_apply
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.billing import InstanceFactory

pytestmark = pytest.mark.django_db



def _chart_data(html: str, name: str) -> dict:
    found = re.search(rf'<script id="chart-data-{name}" type="application/json">(.*?)</script>', html, re.S)
    assert found, f"no data for chart {name}"
    return json.loads(found.group(1))


def _report(node, gpu, util, mem_gib, ago_s, seq):
    node_telemetry_apply(node=node, seq=seq, telemetry={
        "collected_at": timezone.now() - timedelta(seconds=ago_s),
        "gpus": [{"uuid": gpu.uuid, "utilization_pct": util, "memory_used_bytes": mem_gib * 2**30}],
    })


def test_the_page_and_its_poll_chart_the_instances_gpu(owner_client, org, launch, notebook_setup):
    # Given a scheduled notebook holding one GPU that reported twice in the last hour
    instance = launch()
    gpu = instance.allocation.slices.get().gpu
    _report(notebook_setup["node"], gpu, 35, 10, ago_s=600, seq=1)
    _report(notebook_setup["node"], gpu, 80, 20, ago_s=60, seq=2)

    # When the page is shown, and when the chart polls
    page = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()
    poll = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/usage/").content.decode()

    # Then both carry the GPU's utilisation (%) and memory (GiB) per minute, gaps as null
    for html in (page, poll):
        util, memory = _chart_data(html, "gpu-utilisation"), _chart_data(html, "gpu-memory")
        assert util["unit"] == "%" and util["yMax"] == 100 and memory["unit"] == "GiB"
        assert [s["label"] for s in util["series"]] == [f"GPU #{gpu.index}"]
        values = util["series"][0]["values"]
        assert [v for v in values if v is not None] == [35.0, 80.0] and None in values
        assert [v for v in memory["series"][0]["values"] if v is not None] == [10.0, 20.0]
        assert 60 <= len(util["labels"]) <= 61
    assert poll.lstrip().startswith('<section id="usage-chart"') and 'hx-trigger="every 15s"' in poll


def test_a_gpu_without_history_says_no_data_yet(owner_client, org, launch):
    instance = launch()
    poll = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/usage/").content.decode()
    assert poll.count("No data yet.") == 2 and "chart-data-" not in poll


def test_an_instance_without_gpus_has_no_chart(owner_client, org):
    instance = InstanceFactory(organization=org)  # stopped: it holds no GPU
    assert owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/usage/").content.decode().strip() == ""
    page = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()
    assert 'data-testid="usage-chart"' not in page


def test_another_tenants_instance_chart_is_404(org, launch):
    instance = launch()
    stranger = UserFactory()
    theirs = OrganizationFactory(owner=stranger)
    client = Client()
    client.force_login(stranger)
    assert client.get(f"/orgs/{theirs.slug}/instances/{instance.pk}/usage/").status_code == 404
    assert client.get(f"/orgs/{org.slug}/instances/{instance.pk}/usage/").status_code == 404
