"""The agents' steady-state reports on a lean ASGI path, in front of Django.

Heartbeats and telemetry are the portal's most frequent requests by far (every agent, every
interval). Through Django each paid a fixed cost several times its own work (bench/README.md,
"Where a report's time goes"): the ASGI handler's hops between the event loop and its thread,
13 middleware none of which an agent needs (sessions, CSRF, messages, CSP, ...), DRF's request,
negotiation and renderer, and a field object per value in the serializer. This path answers
`POST /api/v1/agent/heartbeat` (no inventory, with or without telemetry) and `POST
/api/v1/agent/telemetry` itself, on the event loop: the credential from the per-process cache
(a query in Django's thread only when it is not cached), then the report into the process's
buffer (services/report_buffer.py). A task on the same loop has the buffer written in batches (one
statement for every node, 4 times a second, in a thread of its own), then announces the new
telemetry to the node pages that are open (live_presence.py). No thread hop and no query per report.

What the agent sees is as before: 200 (or 202 for telemetry apart), `heartbeat_interval_s`, and
`gpus_updated` when the heartbeat carried telemetry — now the number of GPUs the report gave values
for, taken (0 when only the telemetry was stale), rather than the number of rows written, which
is not known when the answer goes; the agent only reads whether the key is there. A report at or
below the newest seq this process took for the node is answered 409 as before; one that only the
batch statement can find stale (another process took a newer one) is answered 200 and stored
nowhere. A down node comes back when its heartbeat is written (at most a flush period later).

Only a report that passes the strict checks below is taken here; anything else — no or a wrong
credential, bad JSON, a value out of range, an inventory (the rare, full path) — goes on to
Django unchanged (its body replayed), where the DRF view gives the same answer and the same error
messages as before. So the checks may be stricter than the serializers, never looser.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import connections
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from ..live_presence import telemetry_announce
from ..services.report_buffer import FLUSH_INTERVAL_S, STALE, TAKEN, FlushResult, ReportBuffer, report_buffer
from ..services.reports import node_authenticate, node_credential_cached
from .serializers import MAX_GPUS_PER_NODE, GpuTelemetrySerializer

logger = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/v1/agent/heartbeat"
TELEMETRY_PATH = "/api/v1/agent/telemetry"
_SEQ_MAX = 2**63 - 1  # the column is a bigint


def _gpu_rules() -> dict[str, tuple[bool, float, float]]:
    """GpuTelemetrySerializer's numeric fields as (integer?, minimum, maximum), read from the
    serializer itself so the two cannot drift; an unbounded maximum is the bigint's."""
    rules = {}
    for name, field in GpuTelemetrySerializer().fields.items():
        if isinstance(field, serializers.IntegerField | serializers.FloatField):
            maximum = field.max_value if field.max_value is not None else _SEQ_MAX
            rules[name] = (isinstance(field, serializers.IntegerField), field.min_value, maximum)
    return rules


_UUID_FIELD = GpuTelemetrySerializer().fields["uuid"]
_GPU_UUID = next(v.regex for v in _UUID_FIELD.validators if isinstance(v, RegexValidator))
_GPU_UUID_MAX = _UUID_FIELD.max_length
# All optional and nullable, as in the serializer.
_GPU_FIELDS = _gpu_rules()

Answer = tuple[int, dict[str, Any]]


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _seq(value: Any) -> int | None:
    return value if type(value) is int and 1 <= value <= _SEQ_MAX else None


def _number_ok(value: Any, integer: bool, low: float, high: float) -> bool:
    if value is None:
        return True
    if integer:
        return type(value) is int and low <= value <= high
    return type(value) in (int, float) and low <= value <= high


def _telemetry(body: Any) -> dict[str, Any] | None:
    """The telemetry body as TelemetryBodySerializer would give it, or None to let DRF judge."""
    if not isinstance(body, dict):
        return None
    collected_at, gpus = _aware(body.get("collected_at")), body.get("gpus")
    if collected_at is None or not isinstance(gpus, list) or len(gpus) > MAX_GPUS_PER_NODE:
        return None
    checked = []
    for gpu in gpus:
        if not isinstance(gpu, dict):
            return None
        uuid = gpu.get("uuid")
        if not isinstance(uuid, str) or len(uuid) > _GPU_UUID_MAX or not _GPU_UUID.fullmatch(uuid):
            return None
        if not all(_number_ok(gpu.get(name), *rule) for name, rule in _GPU_FIELDS.items()):
            return None
        checked.append({"uuid": uuid, **{name: gpu[name] for name in _GPU_FIELDS if name in gpu}})
    return {"collected_at": collected_at, "gpus": checked}


def _credential(authorization: str) -> tuple[str, str] | None:
    scheme, _, value = authorization.partition(" ")
    node_id, _, credential = value.strip().partition(":")
    if scheme != "Node" or not node_id or not credential:
        return None
    return node_id, credential


def _parsed(path: str, body: bytes) -> tuple[int, dict[str, Any] | None] | None:
    """A steady-state report's seq and telemetry (None: a heartbeat without), or None: Django
    answers it."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or (seq := _seq(data.get("seq"))) is None:
        return None
    if path == HEARTBEAT_PATH:
        if _aware(data.get("sent_at")) is None or data.get("inventory") is not None:
            return None
        telemetry = None
        if data.get("telemetry") is not None and (telemetry := _telemetry(data["telemetry"])) is None:
            return None
    elif (telemetry := _telemetry(data.get("telemetry"))) is None:
        return None
    return seq, telemetry


def _connections_checked() -> None:
    """What Django's request_started/finished signals do (close_old_connections; with the pool, a
    connection goes back to it), except inside a caller's transaction (tests), which it would end."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def node_id_authenticated(*, node_id: str, credential: str) -> UUID | None:
    """The node's key when the credential is its own (a query unless cached), run as Django runs a
    request: database connections checked before and after."""
    _connections_checked()
    try:
        node = node_authenticate(node_id=node_id, credential=credential)
    except Exception:  # noqa: BLE001 - a malformed id: DRF gives the answer
        node = None
    finally:
        _connections_checked()
    return None if node is None else node.pk


def report_buffer_flushed(buffer: ReportBuffer) -> FlushResult:
    """One flush, database connections checked before and after."""
    _connections_checked()
    try:
        return buffer.flush()
    finally:
        _connections_checked()


_authenticated_async = sync_to_async(node_id_authenticated, thread_sensitive=True)
# Flushes run in a thread of their own, not Django's: a slow view in that thread must not hold
# reports past the liveness sweep's allowance (services/nodes.py REPORT_STORE_ALLOWANCE).
_flush_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-report-flush")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_STALE_HEARTBEAT = (409, {"detail": "Stale heartbeat: a newer one was already accepted."})
_STALE_TELEMETRY = (409, {"detail": "Stale telemetry: newer telemetry was already accepted."})


def _flush_left(buffer: ReportBuffer) -> None:
    if len(buffer):
        try:
            report_buffer_flushed(buffer)
        except Exception:
            logger.exception("agent reports left at exit could not be stored")


def _flush_at_exit(buffer: ReportBuffer) -> None:
    """The interpreter's exit: what is left in the buffer, written from a thread of its own (the
    flush thread no longer takes work then), waited for."""

    def run() -> None:
        try:
            _flush_left(buffer)
        finally:
            connections.close_all()

    if len(buffer):
        worker = threading.Thread(target=run, name="agent-report-flush-at-exit")
        worker.start()
        worker.join()


class AgentReportsFastPath:
    """ASGI middleware: steady-state agent reports answered here, everything else by `app`.

    Reports are taken into `buffer` and written in batches every `flush_every` seconds by a task
    on the server's event loop (started with the first report); `flush_every=None` starts no task
    (tests flush the buffer themselves). When the server stops, its lifespan shutdown (`lifespan`)
    ends the task, which writes what is left first; a loop closed otherwise cancels the task to the
    same effect, and an exit handler covers the rest (services/report_buffer.py says what a crash
    loses)."""

    def __init__(self, app, *, buffer: ReportBuffer = report_buffer, flush_every: float | None = FLUSH_INTERVAL_S):
        self.app = app
        self.paths = {HEARTBEAT_PATH, TELEMETRY_PATH}
        self.buffer = buffer
        self.flush_every = flush_every
        self._flusher: asyncio.Task | None = None
        self._exit_hook = False

    def _flusher_started(self) -> None:
        if self.flush_every is None:
            return
        loop = asyncio.get_running_loop()
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush_loop(), name="agent-report-flush")
            if not self._exit_hook:  # a server stopped without cancelling the task (SIGINT's path)
                atexit.register(_flush_at_exit, self.buffer)
                self._exit_hook = True

    async def _flush_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_every)
                if not len(self.buffer):
                    continue
                try:
                    result = await asyncio.wrap_future(_flush_thread.submit(report_buffer_flushed, self.buffer))
                except Exception:
                    logger.exception("agent reports could not be stored; kept for the next flush")
                    continue
                # After the commit, so a page re-rendered on this push shows the stored values.
                await telemetry_announce(node_ids=result.telemetry_nodes)
        except asyncio.CancelledError:
            # The server is stopping: after the flush in flight (queued behind it in its thread),
            # what is left, waited for here, before the process exits.
            try:
                _flush_thread.submit(_flush_left, self.buffer).result(timeout=60)
            except RuntimeError:  # the interpreter is shutting down: no new work for that thread
                _flush_at_exit(self.buffer)
            except Exception:  # noqa: BLE001 - a flush stuck past the timeout: stop anyway
                logger.exception("agent reports left at exit could not be stored")
            raise

    async def stopped(self) -> None:
        """The server is stopping: the flush task ends, writing what is left, and this waits."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if len(self.buffer):  # no task ran on this loop (or it could not write): once more
            await asyncio.wrap_future(_flush_thread.submit(_flush_left, self.buffer))

    async def lifespan(self, scope: dict, receive: Receive, send: Send) -> None:
        """ASGI lifespan (portal/asgi.py). Its shutdown is the one moment uvicorn gives an app on
        SIGTERM/SIGINT, after the last connection closed: it re-raises the signal with the default
        handler as soon as its serve() returns, before the loop would cancel this task, so neither
        that cancellation nor the interpreter's exit handlers would run."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.stopped()
                except Exception:
                    logger.exception("agent reports left at shutdown could not be stored")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, path: str, authorization: str, body: bytes) -> Answer | None:
        """The answer to a steady-state report, or None: Django answers it."""
        parsed, credential = _parsed(path, body), _credential(authorization)
        if parsed is None or credential is None:
            return None
        seq, telemetry = parsed
        node_id, secret = credential
        known = node_credential_cached(node_id=node_id, credential=secret)
        if known is None:  # not cached: one query, in Django's thread
            node_pk = await _authenticated_async(node_id=node_id, credential=secret)
        else:
            node_pk = _uuid(node_id) if known else None
        if node_pk is None:
            return None
        received_at = datetime.now(UTC)
        if path == TELEMETRY_PATH:
            if self.buffer.telemetry_take(node_id=node_pk, seq=seq, telemetry=telemetry) == STALE:
                return _STALE_TELEMETRY
            self._flusher_started()
            return 202, {"gpus_updated": _gpu_count(telemetry)}
        if self.buffer.heartbeat_take(node_id=node_pk, seq=seq, at=received_at) == STALE:
            return _STALE_HEARTBEAT
        answer: dict[str, Any] = {"heartbeat_interval_s": settings.CAPACITY_HEARTBEAT_INTERVAL_S}
        if telemetry is not None:
            # Only the telemetry may be stale (sent apart with a higher seq): the beat still counts.
            taken = self.buffer.telemetry_take(node_id=node_pk, seq=seq, telemetry=telemetry) == TAKEN
            answer["gpus_updated"] = _gpu_count(telemetry) if taken else 0
        self._flusher_started()
        return 200, answer

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if settings.SECURE_SSL_REDIRECT and not _secure(scope, headers):
            return await self.app(scope, receive, send)  # Django's redirect to https
        declared = headers.get(b"content-length", b"0")
        limit = settings.CAPACITY_AGENT_MAX_BODY_BYTES
        if not declared.isdigit() or int(declared) > limit:
            return await self.app(scope, receive, send)  # Django's 413 / 400
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        try:
            answer = await self._answer(scope["path"], authorization, body)
        except Exception:
            logger.exception("agent report on the fast path failed")
            answer = (500, {"detail": "Internal error; the report was not stored."})
        if answer is None:
            return await self.app(scope, _replay(body, receive), send)
        status, payload = answer
        content = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _gpu_count(telemetry: dict[str, Any]) -> int:
    """GPUs the telemetry reports values for (a repeated UUID counts once)."""
    return len({gpu["uuid"] for gpu in telemetry["gpus"]})


def _secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    """As Django's request.is_secure(): the proxy's header when one is configured, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        return headers.get(header, b"").decode("latin-1").split(",")[0].strip() == value
    return scope.get("scheme") == "https"


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request body once more for Django, then the connection's own messages (disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
