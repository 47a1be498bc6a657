"""localstripe, with the Stripe behaviour the billing app relies on that localstripe 1.15 lacks.

Only development and tests run this; production talks to Stripe. The upstream server is
imported unchanged and extended from outside:

- one-off invoices built from the customer's pending invoice items (upstream invoices only
  subscriptions), keeping their metadata, and `POST /v1/invoices/{id}/finalize`;
- `Idempotency-Key`: a repeated POST with the same key answers the first answer and has no
  second effect, as Stripe promises for 24 hours;
- events Stripe sends and upstream does not: setup_intent.succeeded, payment_method.attached /
  detached, invoice.finalized, invoice.paid and charge.refunded;
- `POST /_config/outage` {"count": n, "when": "before" | "after"}: the next n API requests fail
  with 503, either before they take effect or after (the answer is lost, the effect is not), so
  tests can show that retries never double-charge;
- the store lives in the file given with --store (upstream writes /tmp/localstripe.pickle after
  every object, which two runs on one machine would share, and which costs O(objects) per write).

Run: python -m devtools.localstripe_plus --port 8420 [--store FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import socket
from pathlib import Path

from aiohttp import web
from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import Charge, Event, Invoice, InvoiceItem, PaymentMethod, SetupIntent, store
from localstripe.server import app, json_response
from localstripe.webhooks import schedule_webhook

_store_file: Path | None = None
_idempotent_answers: dict[str, tuple[int, bytes]] = {}
_outage = {"count": 0, "when": "before"}


def _store_dump() -> None:
    if _store_file is not None:
        tmp = _store_file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(_store_file)


def _store_load() -> None:
    if _store_file is not None and _store_file.exists():
        with open(_store_file, "rb") as f:
            dict.update(store, pickle.load(f))


# Upstream pickles the whole store to a shared /tmp file on every write.
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None


def _invoice_create(
    cls,
    customer=None,
    subscription=None,
    description=None,
    metadata=None,
    pending_invoice_items_behavior=None,
    auto_advance=None,
    collection_method=None,
    **kwargs,
):
    if subscription is not None:
        return _upstream_invoice_create(customer=customer, subscription=subscription, description=description)
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    if not isinstance(customer, str) or not customer.startswith("cus_"):
        raise UserError(400, "Bad request")
    pending = [ii for ii in InvoiceItem._api_list_all(None, customer=customer)._list if ii.invoice is None]
    if not pending:
        raise UserError(400, "Nothing to invoice", {"code": "invoice_no_customer_line_items"})
    # The upstream constructor takes at most 99 pending items; a one-off invoice takes them all.
    invoice = cls(customer=customer, description=description, metadata=metadata)
    for item in pending:
        if item.invoice is None:
            item.invoice = invoice.id
            invoice.lines._list.append(resources.InvoiceLineItem(item))
    return invoice


_upstream_invoice_create = Invoice._api_create
Invoice._api_create = classmethod(_invoice_create)


def _invoice_finalize(id, **kwargs):
    invoice = Invoice._api_retrieve(id)
    if invoice.status != "draft":
        raise UserError(400, f"This invoice is already {invoice.status}.")
    invoice._finalize()
    schedule_webhook(Event("invoice.finalized", invoice))
    return invoice


_upstream_on_payment_success = Invoice._on_payment_success


def _invoice_on_payment_success(self):
    _upstream_on_payment_success(self)
    schedule_webhook(Event("invoice.paid", self))


Invoice._on_payment_success = _invoice_on_payment_success


async def _finalize_view(request: web.Request) -> web.Response:
    return json_response(_invoice_finalize(request.match_info["id"])._export())


# Events upstream never sends, keyed by (method, path pattern) of a successful request.
def _events_after(request: web.Request, answer: dict) -> list[Event]:
    path, obj = request.path, answer.get("object")
    if request.method != "POST":
        return []
    if obj == "setup_intent" and path.endswith("/confirm") and answer.get("status") == "succeeded":
        return [Event("setup_intent.succeeded", SetupIntent._api_retrieve(answer["id"]))]
    if obj == "payment_method" and path.endswith("/attach"):
        return [Event("payment_method.attached", PaymentMethod._api_retrieve(answer["id"]))]
    if obj == "payment_method" and path.endswith("/detach"):
        return [Event("payment_method.detached", PaymentMethod._api_retrieve(answer["id"]))]
    if obj == "refund" and path == "/v1/refunds":
        # Upstream computes Charge.refunded and amount_refunded from the charge's refunds
        # (read-only properties: assigning them raised, and the refund answered 500).
        return [Event("charge.refunded", Charge._api_retrieve(answer["charge"]))]
    return []


@web.middleware
async def stripe_extras_middleware(request: web.Request, handler):
    if not request.path.startswith("/v1/"):
        return await handler(request)
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if key is not None:
        key = f"{request.path} {key}"
        if key in _idempotent_answers:
            status, body = _idempotent_answers[key]
            return web.Response(
                status=status, body=body, content_type="application/json", headers={"Idempotent-Replayed": "true"}
            )
    outage = None
    if _outage["count"] > 0:
        _outage["count"] -= 1
        outage = web.json_response({"error": {"message": "Simulated Stripe outage", "type": "api_error"}}, status=503)
        if _outage["when"] == "before":
            return outage
    response = await handler(request)
    if key is not None and response.status < 500:
        _idempotent_answers[key] = (response.status, response.body)
    if response.status == 200 and isinstance(response, web.Response) and response.body:
        for event in _events_after(request, json.loads(response.body)):
            schedule_webhook(event)
    if request.method in ("POST", "DELETE"):
        _store_dump()
    return outage or response


async def _config_outage(request: web.Request) -> web.Response:
    data = await request.json()
    _outage["count"] = int(data.get("count", 1))
    _outage["when"] = data.get("when", "before")
    if _outage["when"] not in ("before", "after"):
        raise web.HTTPBadRequest(text="when must be before or after")
    return web.Response()


app.router.add_post("/v1/invoices/{id}/finalize", _finalize_view)
app.router.add_post("/_config/outage", _config_outage)
app.middlewares.append(stripe_extras_middleware)


def main() -> None:
    global _store_file
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", type=Path, help="keep Stripe objects in this file across restarts")
    args = parser.parse_args()
    if args.store:
        _store_file = args.store
        _store_load()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.WARNING)
    web.run_app(app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
