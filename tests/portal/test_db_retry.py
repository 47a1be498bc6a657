"""atomic_retry against a real PostgreSQL deadlock: two connections lock two rows in opposite
orders, PostgreSQL aborts one of them, and the helper runs the loser's block again."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from apps.accounts.models import Organization
from portal.db import atomic_retry, db_error_retryable
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.timeout(60)


def _lock(org_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM accounts_organization WHERE id = %s FOR NO KEY UPDATE", [org_id])


def _opposite_orders(first_id: int, second_id: int, *, wrap) -> tuple[list[str], list[BaseException]]:
    """Two threads, each with its own connection, lock the two rows in opposite orders; both take
    their first row before either asks for its second, so their first tries always deadlock.
    `wrap(block)` is how each thread runs its block. Returns the tries made and what escaped."""
    tries: list[str] = []
    escaped: list[BaseException] = []
    both_hold_one = threading.Barrier(2)

    def client(name: str, mine: int, theirs: int) -> None:
        def block() -> None:
            tries.append(name)
            _lock(mine)
            if tries.count(name) == 1:
                both_hold_one.wait(timeout=20)
            _lock(theirs)
            Organization.objects.filter(pk=mine).update(name=f"{name} was here")

        try:
            wrap(block)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            escaped.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=client, args=("a", first_id, second_id)),
        threading.Thread(target=client, args=("b", second_id, first_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    return tries, escaped


@pytest.mark.django_db(transaction=True)
def test_the_block_that_loses_a_real_deadlock_runs_again_and_succeeds():
    # given two rows that two transactions will lock in opposite orders
    one, two = OrganizationFactory(), OrganizationFactory()

    # when both run their blocks through atomic_retry
    tries, escaped = _opposite_orders(one.pk, two.pk, wrap=lambda block: atomic_retry(block)())

    # then nothing escapes: the one PostgreSQL chose as the deadlock's victim ran a second time
    assert escaped == []
    assert sorted(tries) in (["a", "a", "b"], ["a", "b", "b"])
    # and both blocks' writes are there
    assert set(Organization.objects.filter(pk__in=[one.pk, two.pk]).values_list("name", flat=True)) == {
        "a was here",
        "b was here",
    }


@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_the_deadlock_goes_up_to_the_caller():
    # given the same two rows, and blocks that run inside their callers' transactions
    one, two = OrganizationFactory(), OrganizationFactory()

    def inside_a_transaction(block) -> None:
        with transaction.atomic():
            atomic_retry(block)()

    # when they deadlock
    tries, escaped = _opposite_orders(one.pk, two.pk, wrap=inside_a_transaction)

    # then no block ran twice (only the outermost transaction can be retried), and the victim's
    # caller got the deadlock to retry itself
    assert sorted(tries) == ["a", "b"]
    [lost] = escaped
    assert isinstance(lost.__cause__, psycopg.errors.DeadlockDetected) and db_error_retryable(lost)


@pytest.mark.django_db(transaction=True)
def test_other_database_errors_are_not_retried():
    # given a block that breaks a unique constraint
    existing = OrganizationFactory()
    tries = []

    @atomic_retry
    def duplicate() -> None:
        tries.append(1)
        Organization.objects.create(name="copy", slug=existing.slug)

    # when it runs, then the error comes out at once, after one try
    with pytest.raises(IntegrityError):
        duplicate()
    assert tries == [1] and not db_error_retryable(IntegrityError("duplicate key"))
