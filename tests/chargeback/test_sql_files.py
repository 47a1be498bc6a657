"""The chargeback SQL files (apps/chargeback/sql/) and the database agree: the newest file of every
fold function is what the migrated test database has installed, every file a migration names
exists, every file is loaded by some migration, and no file changed after its checksum was
recorded (the test database is built from the same files, so only the checksums can show a file
edited in place). The comparison itself is capacity's (tests/capacity/test_sql_files.py)."""

import ast
import hashlib
from pathlib import Path

import pytest
from django.db import DatabaseError, connection

from apps.chargeback.sql import SQL_DIR, sql_files, sql_join, sql_read, sql_replace
from tests.capacity.test_sql_files import function_difference, statement

pytestmark = pytest.mark.django_db

MIGRATIONS_DIR = Path(SQL_DIR).parent / "migrations"
FOLDS = {"chargeback_fold_records", "chargeback_fold_charges", "chargeback_fold_telemetry"}
ROWS_ADD = "chargeback_rows_add"  # the one upsert into the hour and day tables, which each fold calls


def newest() -> dict[str, int]:
    return {name: max(versions) for name, versions in sql_files().items()}


def migration_references() -> set[tuple[str, int]]:
    """(function, version) of every file the chargeback migrations name through the loader, read
    from their source: sql_read("<name>", <version>…) and sql_replace("<name>", <new>, <old>)."""
    found: set[tuple[str, int]] = set()
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if func not in ("sql_read", "sql_replace"):
                continue
            args = [arg.value if isinstance(arg, ast.Constant) else None for arg in node.args]
            assert args and all(arg is not None for arg in args), f"{path.name}:{node.lineno}: literal names only"
            found.update((args[0], version) for version in args[1:])
    return found


def test_the_folds_are_the_files():
    # Given the SQL files
    # When they are listed
    # Then there is one function per fold the roll-up calls, and the upsert they share
    assert set(newest()) == FOLDS | {ROWS_ADD}


@pytest.mark.parametrize("name", sorted(newest()))
def test_the_newest_file_of_each_function_is_installed(name):
    # Given the newest file of a function, and the test database migrated by the migrations
    version = newest()[name]
    text = sql_read(name, version)
    assert statement(text) == ("FUNCTION", name), f"{name}.v{version}.sql defines something else"

    # When it is compared with what the database has
    with connection.cursor() as cursor:
        difference = function_difference(cursor, name, text)

    # Then they are the same
    assert difference is None, f"{name}.v{version}.sql is not what the migrations installed: {difference}"


def test_a_fold_changed_in_its_file_only_is_noticed():
    # Given the installed records fold, and its newest file counting runs in reservations again
    text = sql_read("chargeback_fold_records", newest()["chargeback_fold_records"])
    changed = text.replace("THEN 0 ELSE r.seconds END", "THEN r.seconds ELSE r.seconds END", 1)
    assert changed != text

    # When the changed text is compared with the database
    with connection.cursor() as cursor:
        difference = function_difference(cursor, "chargeback_fold_records", changed)

    # Then the change is reported
    assert difference and "chargeback_fold_records" in difference


def test_no_file_changed_after_its_checksum_was_recorded():
    # Given the checksums recorded when each file was added (sha256sum's format)
    lines = (Path(SQL_DIR) / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    recorded = {file: digest for digest, file in (line.split("  ", 1) for line in lines if line.strip())}

    # When every SQL file is hashed
    actual = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for versions in sql_files().values()
        for path in versions.values()
    }

    # Then each matches, and each file has exactly one record
    unrecorded = sorted(set(actual) - set(recorded))
    assert not unrecorded, f"record new files: cd apps/chargeback/sql && sha256sum {' '.join(unrecorded)} >> SHA256SUMS"
    assert sorted(set(recorded) - set(actual)) == [], "SHA256SUMS names files that do not exist"
    changed = sorted(name for name in actual if actual[name] != recorded[name])
    assert changed == [], (
        f"{changed} changed after a migration loaded them: put the change in a new version with a migration"
        " (apps/chargeback/sql/README.md)"
    )


def test_migrations_and_files_name_each_other():
    # Given every SQL file, and every file the chargeback migrations load
    files = {(name, version) for name, versions in sql_files().items() for version in versions}
    loaded = migration_references()

    # When they are compared
    # Then every file named exists, and none is left out (a version without a migration would
    # never reach a database)
    assert loaded - files == set()
    assert files - loaded == set()


def test_the_loader_keeps_the_files_text():
    # Given a file as stored
    stored = (Path(SQL_DIR) / "chargeback_fold_charges.v1.sql").read_text(encoding="utf-8")

    # When it is read, as a first creation, and as a (trivial) replacement operation
    create = sql_read("chargeback_fold_charges", 1, create=True)
    operation = sql_replace("chargeback_fold_charges", 1, 1)

    # Then only the first creation's verb changes, and the operation runs the file whole
    assert sql_read("chargeback_fold_charges", 1) == stored
    assert create == "CREATE " + stored.removeprefix("CREATE OR REPLACE ")
    assert operation.sql == operation.reverse_sql == sql_join(stored)
    with pytest.raises(FileNotFoundError, match=r"chargeback_fold_charges\.v9\.sql"):
        sql_read("chargeback_fold_charges", 9)


def test_the_upsert_names_only_a_subject_column():
    # Given the upsert the folds share, which builds its ON CONFLICT from the column it is given
    # When it is given a column that is not a subject
    # Then it refuses before building anything
    with connection.cursor() as cursor, pytest.raises(DatabaseError, match="instance_id or reservation_id"):
        cursor.execute("SELECT chargeback_rows_add(ARRAY[]::chargeback_usage[], 'organization_id')")
