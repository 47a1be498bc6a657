"""The agents' reports made cheap: telemetry rides on the heartbeat (one statement for both), the
credential comes from a short-lived cache, and steady-state reports are answered on a lean ASGI
path in front of Django, which writes them in batches (tests/capacity/test_report_buffer.py). What
must not change: a stale report never overwrites a newer one, a down node comes back with its next
heartbeat, a deleted node is refused, bad input gets Django's own answer."""

import copy
import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.utils import timezone

from apps.capacity.api.fast import AgentReportsFastPath
from apps.capacity.models import Gpu, GpuSample, Node, NodeState
from apps.capacity.services.nodes import node_state_transition, registration_token_create
from apps.capacity.services.report_buffer import report_buffer
from apps.catalog.models import Region

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_report_buffer():
    """The process's buffer starts and ends each test empty (its nodes live in this test's transaction)."""
    report_buffer.clear()
    yield
    report_buffer.clear()


def lean_path(django) -> AgentReportsFastPath:
    """The fast path without its flush task: a test writes the buffer itself (report_buffer.flush)."""
    return AgentReportsFastPath(django, flush_every=None)


FIXTURES = Path(__file__).resolve().parents[1] / "agent" / "fixtures"
TWO_H200 = json.loads((FIXTURES / "nvml_2xh200_capture.json").read_text())


@pytest.fixture
def node_client(api_client, demo_catalog):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    reply = api_client.post(
        "/api/v1/agent/register", {"token": token, "inventory": TWO_H200["inventory_payload"]}, format="json"
    )
    body = reply.json()
    api_client.authorization = f"Node {body['node_id']}:{body['credential']}"
    api_client.credentials(HTTP_AUTHORIZATION=api_client.authorization)
    api_client.node = Node.objects.get(pk=body["node_id"])
    return api_client


def telemetry_payload(utilization: int) -> dict:
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    payload["collected_at"] = timezone.now().isoformat()
    for gpu in payload["gpus"]:
        gpu["utilization_pct"] = utilization
    return payload


def beat(seq: int, telemetry: dict | None = None) -> dict:
    body = {"seq": seq, "sent_at": timezone.now().isoformat(), "inventory": None}
    if telemetry is not None:
        body["telemetry"] = telemetry
    return body


def utilizations(node) -> list[int]:
    return list(Gpu.objects.filter(node=node).order_by("index").values_list("utilization_pct", flat=True))


# --- telemetry in the heartbeat, through the DRF view ------------------------------------------------


def test_a_heartbeat_carrying_telemetry_is_one_statement_once_the_credential_is_cached(
    node_client, django_assert_num_queries
):
    node_client.post("/api/v1/agent/heartbeat", beat(10), format="json")  # the credential is cached

    with django_assert_num_queries(1):
        response = node_client.post("/api/v1/agent/heartbeat", beat(11, telemetry_payload(42)), format="json")

    assert response.status_code == 200 and response.json() == {"heartbeat_interval_s": 10, "gpus_updated": 2}
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.last_seq, node.last_telemetry_seq) == (11, 11)
    assert utilizations(node) == [42, 42]
    assert GpuSample.objects.filter(gpu__node=node, utilization_pct=42).count() == 2


def test_a_stale_heartbeat_carrying_telemetry_is_refused_and_writes_no_gpu(node_client):
    node_client.post("/api/v1/agent/heartbeat", beat(20, telemetry_payload(30)), format="json")

    response = node_client.post("/api/v1/agent/heartbeat", beat(19, telemetry_payload(99)), format="json")

    assert response.status_code == 409
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.last_seq, node.last_telemetry_seq) == (20, 20)
    assert utilizations(node) == [30, 30]


def test_newer_telemetry_sent_apart_keeps_its_values_and_the_heartbeat_still_counts(node_client):
    # Given telemetry sent apart with seq 30
    node_client.post("/api/v1/agent/telemetry", {"seq": 30, "telemetry": telemetry_payload(70)}, format="json")

    # When a heartbeat with seq 25 carries older telemetry
    response = node_client.post("/api/v1/agent/heartbeat", beat(25, telemetry_payload(5)), format="json")

    # Then the heartbeat is recorded, its telemetry is not
    assert response.status_code == 200 and response.json()["gpus_updated"] == 0
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.last_seq, node.last_telemetry_seq) == (25, 30)
    assert utilizations(node) == [70, 70]


def test_a_down_node_comes_back_with_a_heartbeat_although_its_credential_was_cached(node_client):
    node_client.post("/api/v1/agent/heartbeat", beat(40), format="json")  # cached while ready
    node_state_transition(node_id=node_client.node.pk, to_state=NodeState.DOWN, reason="missed 2 heartbeats")

    response = node_client.post("/api/v1/agent/heartbeat", beat(41, telemetry_payload(1)), format="json")

    assert response.status_code == 200
    assert Node.objects.get(pk=node_client.node.pk).state == NodeState.READY


def test_a_deleted_node_with_a_cached_credential_is_refused(node_client):
    node_client.post("/api/v1/agent/heartbeat", beat(50), format="json")
    Node.objects.filter(pk=node_client.node.pk).delete()

    response = node_client.post("/api/v1/agent/heartbeat", beat(51, telemetry_payload(1)), format="json")

    assert response.status_code == 401


def test_a_wrong_credential_is_refused_even_when_the_node_is_cached(node_client):
    node_client.post("/api/v1/agent/heartbeat", beat(60), format="json")
    node_client.credentials(HTTP_AUTHORIZATION=f"Node {node_client.node.pk}:not-the-credential")

    response = node_client.post("/api/v1/agent/heartbeat", beat(61), format="json")

    assert response.status_code == 401
    assert Node.objects.get(pk=node_client.node.pk).last_seq == 60


# --- the lean ASGI path ------------------------------------------------------------------------------


class Django:
    """Stands for the Django application behind the fast path: records what reached it."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})


def asgi_post(app, path: str, authorization: str, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "scheme": "http",
        "headers": [
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }

    async def run():
        communicator = ApplicationCommunicator(app, scope)
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        start = await communicator.receive_output(5)
        content = await communicator.receive_output(5)
        await communicator.wait(5)
        return start["status"], content["body"]

    return async_to_sync(run)()


def test_the_fast_path_answers_a_steady_heartbeat_with_telemetry_without_django_and_a_query(
    node_client, django_assert_num_queries
):
    django = Django()
    app = lean_path(django)
    asgi_post(app, "/api/v1/agent/heartbeat", node_client.authorization, json.dumps(beat(70)).encode())
    report_buffer.flush()

    with django_assert_num_queries(0):  # the credential is cached; the report waits in the buffer
        status, body = asgi_post(
            app,
            "/api/v1/agent/heartbeat",
            node_client.authorization,
            json.dumps(beat(71, telemetry_payload(55))).encode(),
        )
    with django_assert_num_queries(1):  # the batch: one statement for every node's reports
        report_buffer.flush()

    assert (status, json.loads(body)) == (200, {"heartbeat_interval_s": 10, "gpus_updated": 2})
    assert django.bodies == []
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.last_seq, node.last_telemetry_seq) == (71, 71)
    assert utilizations(node) == [55, 55]
    assert GpuSample.objects.filter(gpu__node=node, utilization_pct=55).count() == 2


def test_the_fast_path_answers_telemetry_and_stale_reports_as_the_views_do(node_client):
    app = lean_path(Django())
    auth = node_client.authorization
    body = json.dumps({"seq": 80, "telemetry": telemetry_payload(12)}).encode()

    assert asgi_post(app, "/api/v1/agent/telemetry", auth, body) == (202, b'{"gpus_updated": 2}')
    status, answer = asgi_post(app, "/api/v1/agent/telemetry", auth, body)

    assert status == 409 and "Stale telemetry" in json.loads(answer)["detail"]
    status, answer = asgi_post(app, "/api/v1/agent/heartbeat", auth, json.dumps(beat(80)).encode())
    assert status == 200  # heartbeats have their own seq compare-and-set
    status, answer = asgi_post(app, "/api/v1/agent/heartbeat", auth, json.dumps(beat(79)).encode())
    assert status == 409 and "Stale heartbeat" in json.loads(answer)["detail"]
    report_buffer.flush()
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.last_seq, node.last_telemetry_seq) == (80, 80)
    assert utilizations(node) == [12, 12]


def test_on_the_fast_path_a_down_node_comes_back_when_its_heartbeat_is_stored(node_client):
    app = lean_path(Django())
    asgi_post(app, "/api/v1/agent/heartbeat", node_client.authorization, json.dumps(beat(84)).encode())
    report_buffer.flush()
    node_state_transition(node_id=node_client.node.pk, to_state=NodeState.DOWN, reason="missed 2 heartbeats")

    status, _ = asgi_post(
        app, "/api/v1/agent/heartbeat", node_client.authorization, json.dumps(beat(85, telemetry_payload(3))).encode()
    )
    result = report_buffer.flush()

    assert status == 200 and result.came_back == [node_client.node.pk]
    assert Node.objects.get(pk=node_client.node.pk).state == NodeState.READY


def test_on_the_fast_path_a_deleted_node_is_refused_once_a_flush_finds_it_gone(node_client):
    app = lean_path(Django())
    auth = node_client.authorization
    asgi_post(app, "/api/v1/agent/heartbeat", auth, json.dumps(beat(86)).encode())
    report_buffer.flush()
    Node.objects.filter(pk=node_client.node.pk).delete()

    # Taken (the credential is cached), then dropped by the flush, which forgets the credential.
    assert asgi_post(app, "/api/v1/agent/heartbeat", auth, json.dumps(beat(87)).encode())[0] == 200
    assert report_buffer.flush().gone == [node_client.node.pk]

    django = Django()
    asgi_post(lean_path(django), "/api/v1/agent/heartbeat", auth, json.dumps(beat(88)).encode())
    assert len(django.bodies) == 1  # not known any more: Django's view answers (401)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: b["telemetry"]["gpus"][0].update(utilization_pct=101), id="out of range"),
        pytest.param(lambda b: b["telemetry"]["gpus"][0].update(utilization_pct=True), id="a boolean"),
        pytest.param(lambda b: b["telemetry"]["gpus"][0].update(uuid="GPU-x\n"), id="a uuid with a newline"),
        pytest.param(lambda b: b.update(sent_at="2026-12-07T10:00:00"), id="a naive time"),
        pytest.param(lambda b: b.update(seq=0), id="seq 0"),
        pytest.param(lambda b: b.update(inventory=TWO_H200["inventory_payload"]), id="an inventory"),
    ],
)
def test_anything_but_a_clean_steady_report_goes_to_django_whole(node_client, change):
    django = Django()
    body = beat(90, telemetry_payload(1))
    change(body)
    raw = json.dumps(body).encode()

    assert asgi_post(lean_path(django), "/api/v1/agent/heartbeat", node_client.authorization, raw) == (
        299,
        b"django",
    )
    assert django.bodies == [raw]
    assert Node.objects.get(pk=node_client.node.pk).last_seq != 90


def test_a_wrong_credential_goes_to_django_for_its_answer(node_client):
    django = Django()
    raw = json.dumps(beat(95)).encode()

    asgi_post(lean_path(django), "/api/v1/agent/heartbeat", f"Node {node_client.node.pk}:wrong", raw)

    assert django.bodies == [raw]


def test_bad_input_the_fast_path_passes_on_gets_the_views_400(node_client):
    body = beat(96, telemetry_payload(1))
    body["telemetry"]["gpus"][0]["utilization_pct"] = 101

    response = node_client.post("/api/v1/agent/heartbeat", body, format="json")

    assert response.status_code == 400
    assert Node.objects.get(pk=node_client.node.pk).last_seq != 96
