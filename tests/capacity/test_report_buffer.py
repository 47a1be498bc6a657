"""Steady-state reports taken into a process's buffer and written in batches (one statement for
every node): a stale report never overwrites a newer one, whichever batch or process took it; a
report taken but not yet written is written when the server stops cleanly; a batch that fails is
kept for the next flush. What a crash loses (the reports of the last flush period, which each
agent's next report replaces) is stated in services/report_buffer.py; no test can keep a SIGKILLed
process's memory."""

import copy
import http.client
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import DatabaseError

from apps.capacity.api.fast import AgentReportsFastPath
from apps.capacity.models import Gpu, GpuSample, Node, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.capacity.services.report_buffer import STALE, TAKEN, ReportBuffer, report_buffer
from apps.capacity.services.reports import node_register
from apps.catalog.models import Region
from tests.capacity.test_agent_fast_path import Django, asgi_post, beat
from tests.support.processes import free_port, process_env, spawn, wait_http_ok, web_command

FIXTURES = Path(__file__).resolve().parents[1] / "agent" / "fixtures"
TWO_H200 = json.loads((FIXTURES / "nvml_2xh200_capture.json").read_text())


@pytest.fixture(autouse=True)
def _empty_report_buffer():
    report_buffer.clear()
    yield
    report_buffer.clear()


@pytest.fixture
def node(demo_catalog) -> tuple[Node, str]:
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    node, credential = node_register(token=token, inventory=TWO_H200["inventory_payload"])
    return node, credential


def telemetry(utilization: int, minute: int = 0) -> dict:
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    payload["collected_at"] = datetime(2026, 12, 1, 10, minute, 30, tzinfo=UTC)
    for gpu in payload["gpus"]:
        gpu["utilization_pct"] = utilization
    return payload


def now() -> datetime:
    return datetime.now(UTC)


def stored(node: Node) -> tuple[int, int, list[int]]:
    node.refresh_from_db()
    utilizations = list(Gpu.objects.filter(node=node).order_by("index").values_list("utilization_pct", flat=True))
    return node.last_seq, node.last_telemetry_seq, utilizations


@pytest.mark.django_db
def test_within_a_process_a_report_at_or_below_the_newest_taken_is_stale(node):
    node, _ = node
    buffer = ReportBuffer()

    assert buffer.heartbeat_take(node_id=node.pk, seq=5, at=now()) == TAKEN
    assert buffer.heartbeat_take(node_id=node.pk, seq=5, at=now()) == STALE
    assert buffer.heartbeat_take(node_id=node.pk, seq=4, at=now()) == STALE
    assert buffer.telemetry_take(node_id=node.pk, seq=5, telemetry=telemetry(50)) == TAKEN
    assert buffer.telemetry_take(node_id=node.pk, seq=3, telemetry=telemetry(3)) == STALE
    buffer.flush()

    assert stored(node) == (5, 5, [50, 50])


def _two_processes_took(node) -> tuple[ReportBuffer, ReportBuffer]:
    """Two web processes' buffers: A took seq 10 (utilisation 10), B seq 9 (utilisation 99)."""
    a, b = ReportBuffer(), ReportBuffer()
    a.heartbeat_take(node_id=node.pk, seq=10, at=now())
    a.telemetry_take(node_id=node.pk, seq=10, telemetry=telemetry(10))
    b.heartbeat_take(node_id=node.pk, seq=9, at=now())
    b.telemetry_take(node_id=node.pk, seq=9, telemetry=telemetry(99))
    return a, b


@pytest.mark.django_db
def test_a_stale_report_in_a_later_batch_of_another_process_overwrites_nothing(node):
    # Given two web processes: A took seq 10, B (the agent's request went there first, and was
    # slow) took seq 9 with other values
    node, _ = node
    a, b = _two_processes_took(node)

    # When A's batch is written first, then B's
    a.flush()
    result = b.flush()

    # Then B's batch changes nothing: the seq compare-and-set is in the statement
    assert stored(node) == (10, 10, [10, 10])
    assert result.telemetry_nodes == [] and result.gone == []
    assert not GpuSample.objects.filter(utilization_pct=99).exists()


@pytest.mark.django_db
def test_a_newer_report_in_a_later_batch_wins_and_the_older_one_first_stored_is_replaced(node):
    node, _ = node
    a, b = _two_processes_took(node)

    b.flush()  # the older one first
    assert stored(node) == (9, 9, [99, 99])
    a.flush()

    assert stored(node) == (10, 10, [10, 10])
    # Both reports fall in the same minute: its sample holds the newest values.
    assert set(GpuSample.objects.filter(gpu__node=node).values_list("utilization_pct", flat=True)) == {10}


@pytest.mark.django_db
def test_in_one_batch_each_kind_has_its_own_compare_and_set(node, api_client):
    # Given telemetry stored apart with seq 30 (an older agent), through the DRF view
    node, credential = node
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {node.pk}:{credential}")
    api_client.post("/api/v1/agent/telemetry", {"seq": 30, "telemetry": TWO_H200["telemetry_payload"]}, format="json")
    before = stored(node)[2]
    # When a batch holds a heartbeat seq 25 carrying telemetry seq 25
    buffer = ReportBuffer()
    buffer.heartbeat_take(node_id=node.pk, seq=25, at=now())
    buffer.telemetry_take(node_id=node.pk, seq=25, telemetry=telemetry(5))
    result = buffer.flush()

    # Then the heartbeat is stored, its telemetry is not
    assert stored(node) == (25, 30, before)
    assert result.telemetry_nodes == []


@pytest.mark.django_db
def test_one_statement_writes_many_nodes_and_a_minute_of_history_per_gpu(demo_catalog, django_assert_num_queries):
    region = Region.objects.get(code="us-east-1")
    nodes = []
    for index in range(3):
        inventory = copy.deepcopy(TWO_H200["inventory_payload"])
        inventory["hostname"] = f"host-{index}"
        for gpu in inventory["gpus"]:
            gpu["uuid"] = f"{gpu['uuid'][:-2]}{index:02d}"
        _, token = registration_token_create(region=region, actor=None)
        nodes.append((node_register(token=token, inventory=inventory)[0], inventory))
    buffer = ReportBuffer()
    for seq, (node, inventory) in enumerate(nodes, start=1):
        payload = telemetry(seq * 10)
        for gpu, own in zip(payload["gpus"], inventory["gpus"], strict=True):
            gpu["uuid"] = own["uuid"]
        buffer.heartbeat_take(node_id=node.pk, seq=seq, at=now())
        buffer.telemetry_take(node_id=node.pk, seq=seq, telemetry=payload)

    with django_assert_num_queries(1):
        result = buffer.flush()

    assert result.nodes == 3 and len(result.telemetry_nodes) == 3
    assert [stored(node) for node, _ in nodes] == [(1, 1, [10, 10]), (2, 2, [20, 20]), (3, 3, [30, 30])]
    assert GpuSample.objects.count() == 6


@pytest.mark.django_db
def test_a_heartbeat_stored_in_a_batch_is_stamped_when_it_arrived_not_when_written(node):
    node, _ = node
    buffer = ReportBuffer()
    arrived = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    buffer.heartbeat_take(node_id=node.pk, seq=3, at=arrived)
    buffer.flush()

    node.refresh_from_db()
    assert node.last_heartbeat_at == arrived and node.state == NodeState.READY


@pytest.mark.django_db(transaction=True)
def test_a_report_taken_but_not_yet_written_is_written_when_the_event_loop_ends(node):
    # Given the fast path with a flush task that would not run for an hour
    node, credential = node
    buffer = ReportBuffer()
    app = AgentReportsFastPath(Django(), buffer=buffer, flush_every=3600)

    # When a heartbeat is answered and the event loop then ends without a lifespan shutdown (a
    # loop that closes cancels its tasks; uvicorn's own stop is the next test)
    status, _ = asgi_post(app, "/api/v1/agent/heartbeat", f"Node {node.pk}:{credential}", json.dumps(beat(7)).encode())

    # Then the report was written on the way out
    assert status == 200
    assert len(buffer) == 0
    assert stored(node)[0] == 7


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_is_kept_for_the_next_flush_then_dropped(node):
    node, _ = node
    buffer = ReportBuffer()
    buffer.heartbeat_take(node_id=node.pk, seq=4, at=now())
    buffer.telemetry_take(node_id=node.pk, seq=4, telemetry=telemetry(40_000))  # past smallint: fails

    for _ in range(2):
        with pytest.raises(DatabaseError):
            buffer.flush()
        assert len(buffer) == 1  # kept
    with pytest.raises(DatabaseError):
        buffer.flush()

    assert len(buffer) == 0  # dropped after the third failure: later batches are not blocked
    buffer.heartbeat_take(node_id=node.pk, seq=5, at=now())
    buffer.flush()
    assert stored(node)[0] == 5


@pytest.mark.integration
def test_a_real_web_process_stopped_right_after_answering_has_written_every_report(
    transactional_db, demo_catalog, process_logs
):
    """Given a uvicorn web process (the production command) and nodes whose reports it answered
    moments ago, when it gets SIGTERM before its next flush (every 0.25 s), then every answered
    report is stored: the ASGI lifespan shutdown writes the rest. Without it (`--lifespan off`)
    this fails: uvicorn re-raises SIGTERM with the default handler as soon as it has shut down,
    before the loop would cancel the flush task, so neither that nor the exit handlers run."""
    region = Region.objects.get(code="us-east-1")
    nodes = []
    for index in range(20):
        inventory = copy.deepcopy(TWO_H200["inventory_payload"])
        inventory["hostname"] = f"stop-{index}"
        for gpu in inventory["gpus"]:
            gpu["uuid"] = f"{gpu['uuid'][:-2]}{index:02d}"
        _, token = registration_token_create(region=region, actor=None)
        nodes.append(node_register(token=token, inventory=inventory))
    port = free_port()
    web = spawn("web-stop", web_command(port=port), process_env(), process_logs)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", web)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answered = {}
        for node, credential in nodes:
            body = json.dumps(beat(1_000 + len(answered)))
            headers = {"Authorization": f"Node {node.pk}:{credential}", "Content-Type": "application/json"}
            connection.request("POST", "/api/v1/agent/heartbeat", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            answered[node.pk] = json.loads(body)["seq"]
        connection.close()
    finally:
        web.stop()  # SIGTERM to its group, waited for

    assert web.process.returncode is not None
    assert dict(Node.objects.filter(pk__in=answered).values_list("pk", "last_seq")) == answered
