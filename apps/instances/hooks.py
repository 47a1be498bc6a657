"""Lifecycle hooks: how apps above `instances` follow what instances do without `instances`
importing them (the layers are accounts → catalog → capacity → instances → billing, then courses
and chargeback; a lower one never imports a higher one, tests/portal/test_import_layers.py).

Three kinds of subscriber, registered in the subscribing app's AppConfig.ready():

- `launch_check_subscribe`: asked before a launch or a start writes anything; refuses by raising
  ValidationError with the reason (billing: a usable card, credits, standing, hard caps).
- `launch_gate_subscribe`: asked by the launch page before it shows the form: "may this
  organization launch, and if not, why and where is that fixed?" Answers a `LaunchBlock` (a
  title, the reason in words, and a link: a label and a URL the subscriber reversed) or None.
  The same facts as the launch check, said so that a page can render a link, not a raw path.
- `in_transaction_subscribe`: called by `instance_transition` (and by a launch, the transition
  from nothing to REQUESTED) inside its transaction, after the instance row is locked and
  updated. For what must commit or roll back with the state change: metering opens and closes a
  run there. It runs under the instance's row lock, so it may only lock what comes after the
  instance in portal/db.py's lock order (its runtime, its open run, usage records), never a
  billing account, budget or quota; and it may refuse the transition by raising.
- `on_commit_subscribe`: called once the transition has committed (never for one rolled back),
  with ids only, so it reads fresh rows and can enqueue tasks or announce (budgets,
  notifications; later courses and chargeback). One that raises is logged and does not stop
  the others: the state change has already happened.

A plain registry rather than Django signals: the subscribers have one typed signature each, run
in registration order, and an in-transaction subscriber's error must reach the caller (a signal's
`send` would do that too, but `send_robust` would swallow it, and nothing in the type says which).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

if TYPE_CHECKING:  # types only: accounts is below instances, so this is no cycle either way
    from apps.accounts.models import Organization, Project

    from .models import Instance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceTransition:
    """One state change of one instance, as subscribers see it. `from_state` is None for a
    launch (the instance did not exist before)."""

    instance_id: UUID
    organization_id: int
    project_id: int | None
    from_state: str | None
    to_state: str
    at: datetime


class LaunchCheck(Protocol):
    def __call__(self, *, organization: Organization, project: Project | None) -> None: ...


@dataclass(frozen=True)
class LaunchBlock:
    """Why an organization may not launch now, and where that is fixed."""

    title: str  # e.g. "Add a card to launch"
    reason: str  # a sentence, no paths
    action_label: str  # e.g. "Add a card"
    action_url: str


class LaunchGate(Protocol):
    def __call__(self, *, organization: Organization, project: Project | None) -> LaunchBlock | None: ...


class InTransactionSubscriber(Protocol):
    def __call__(self, *, instance: Instance, transition: InstanceTransition) -> None: ...


class OnCommitSubscriber(Protocol):
    def __call__(self, *, transition: InstanceTransition) -> None: ...


_launch_checks: list[LaunchCheck] = []
_launch_gates: list[LaunchGate] = []
_in_transaction: list[InTransactionSubscriber] = []
_on_commit: list[OnCommitSubscriber] = []


def _add(registry: list, subscriber: Callable) -> None:
    # ready() can run more than once in one process (tests that reload apps): never call twice.
    if subscriber not in registry:
        registry.append(subscriber)


def launch_check_subscribe(check: LaunchCheck) -> LaunchCheck:
    _add(_launch_checks, check)
    return check


def launch_gate_subscribe(gate: LaunchGate) -> LaunchGate:
    _add(_launch_gates, gate)
    return gate


def in_transaction_subscribe(subscriber: InTransactionSubscriber) -> InTransactionSubscriber:
    _add(_in_transaction, subscriber)
    return subscriber


def on_commit_subscribe(subscriber: OnCommitSubscriber) -> OnCommitSubscriber:
    _add(_on_commit, subscriber)
    return subscriber


def subscriber_remove(subscriber: Callable) -> None:
    """Forget `subscriber` in whichever registry holds it (tests)."""
    for registry in (_launch_checks, _launch_gates, _in_transaction, _on_commit):
        if subscriber in registry:
            registry.remove(subscriber)


def launch_checks_run(*, organization: Organization, project: Project | None) -> None:
    """Ask every launch check; the first that refuses raises. With none registered nothing may
    launch: what runs must be billable, and billing is what registers the check."""
    if not _launch_checks:
        raise ImproperlyConfigured("No launch check is registered (is apps.billing installed?).")
    for check in _launch_checks:
        check(organization=organization, project=project)


def launch_gate_get(*, organization: Organization, project: Project | None = None) -> LaunchBlock | None:
    """The first gate's block, or None when every gate lets `organization` launch. Advice for a
    page; the launch itself still runs every launch check."""
    for gate in tuple(_launch_gates):
        block = gate(organization=organization, project=project)
        if block is not None:
            return block
    return None


def transition_announce(*, instance: Instance, from_state: str | None, at: datetime) -> InstanceTransition:
    """Tell subscribers that `instance` (locked, and already in its new state) moved from
    `from_state`: in-transaction subscribers now, on-commit ones after the commit. Call it inside
    the transaction that made the change."""
    change = InstanceTransition(
        instance_id=instance.pk,
        organization_id=instance.organization_id,
        project_id=instance.project_id,
        from_state=from_state,
        to_state=instance.state,
        at=at,
    )
    for subscriber in tuple(_in_transaction):
        subscriber(instance=instance, transition=change)
    for subscriber in tuple(_on_commit):
        transaction.on_commit(_guarded(subscriber, change))
    return change


def _guarded(subscriber: OnCommitSubscriber, change: InstanceTransition) -> Callable[[], None]:
    def call() -> None:
        try:
            subscriber(transition=change)
        except Exception:  # noqa: BLE001 - the change is committed; one subscriber must not hide it from the rest
            logger.exception("on-commit subscriber %r failed for %s", subscriber, change)

    return call


# --- what instances have cost (lists) ----------------------------------------------------------
# `instance_costs_provide`: billing answers, for a page of instances, what each one's current run
# has cost so far, in one query for the whole page (a list page's query count must not grow with
# its rows). Instances without an open run are absent from the answer.


@dataclass(frozen=True)
class InstanceCost:
    amount: Decimal  # unrounded; the page's money formatter rounds it
    currency: str
    seconds: int  # of the current run so far


class InstanceCostsProvider(Protocol):
    def __call__(self, *, instance_ids: Sequence[UUID]) -> dict[UUID, InstanceCost]: ...


_instance_costs: list[InstanceCostsProvider] = []


def instance_costs_provide(provider: InstanceCostsProvider) -> InstanceCostsProvider:
    _add(_instance_costs, provider)
    return provider


def instance_costs_get(*, instance_ids: Sequence[UUID]) -> dict[UUID, InstanceCost]:
    """Cost so far of each listed instance's current run; {} without a provider or without ids."""
    costs: dict[UUID, InstanceCost] = {}
    if not instance_ids:
        return costs
    for provider in tuple(_instance_costs):
        costs.update(provider(instance_ids=instance_ids))
    return costs
