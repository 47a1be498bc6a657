"""The capacity SQL files (apps/capacity/sql/) and the database agree: the newest file of every
function and trigger is what the migrated test database has installed, every file a migration names
exists, every file is loaded by some migration, and no file changed after its checksum was recorded.
So a file edited, or a version added, without a migration fails here rather than in production.

The checksums are needed because the test database is built by the same migrations from the same
files: a file edited in place is installed there too, and only production (migrated long ago)
would keep the old text."""

import ast
import hashlib
import re
from pathlib import Path

import pytest
from django.db import connection

from apps.capacity.sql import SQL_DIR, sql_files, sql_join, sql_read, sql_replace

pytestmark = pytest.mark.django_db

MIGRATIONS_DIR = Path(SQL_DIR).parent / "migrations"
# The loader's functions that name files, and which of their arguments are versions.
LOADERS = {"sql_read": (1,), "sql_replace": (1, 2)}
SCRATCH = "sql_files_check"

_STATEMENT = re.compile(r"^CREATE OR REPLACE (?P<kind>FUNCTION|TRIGGER) (?P<name>\w+)")


def newest() -> dict[str, int]:
    return {name: max(versions) for name, versions in sql_files().items()}


def squeezed(text: str) -> str:
    """Whitespace-insensitive form: reindenting a file is not a change of definition."""
    return " ".join(text.split())


def statement(text: str) -> tuple[str, str]:
    match = _STATEMENT.match(text)
    assert match, f"not a CREATE OR REPLACE FUNCTION/TRIGGER statement: {text[:80]!r}"
    return match["kind"], match["name"]


def function_difference(cursor, name: str, text: str) -> str | None:
    """How the function `text` defines differs from the installed `name`, or None. The file's
    function is created in a scratch schema (rolled back with the test) and both are rendered by
    pg_get_functiondef, so arguments, return type, language, SET clauses and body all count."""
    cursor.execute(
        "SELECT n.nspname, p.prosrc, pg_get_functiondef(p.oid) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = %s AND n.nspname <> %s",
        [name, SCRATCH],
    )
    installed = cursor.fetchall()
    if len(installed) != 1:
        return f"{len(installed)} installed functions named {name}"
    schema, installed_body, installed_def = installed[0]

    body = re.search(r"\bAS \$\$(.*)\$\$;\s*$", text, re.DOTALL)
    if body is None:
        return "the file's body is not quoted AS $$ … $$;"
    if squeezed(body[1]) != squeezed(installed_body):
        return f"body (prosrc) differs from the installed {name}"

    cursor.execute("SELECT current_setting('search_path')")
    (search_path,) = cursor.fetchone()
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {SCRATCH}")
    cursor.execute(f"SET LOCAL search_path = {SCRATCH}, {schema}")
    cursor.execute(text)
    cursor.execute(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.proname = %s AND p.pronamespace = to_regnamespace(%s)",
        [name, SCRATCH],
    )
    (from_file,) = cursor.fetchone()
    cursor.execute(f"DROP SCHEMA {SCRATCH} CASCADE")
    cursor.execute("SELECT set_config('search_path', %s, true)", [search_path])
    # Rendered with the same search path, the two differ only in the schema their name is in.
    from_file = from_file.replace(f"FUNCTION {SCRATCH}.{name}(", f"FUNCTION {schema}.{name}(", 1)
    if squeezed(from_file) != squeezed(installed_def):
        return f"definition differs:\n--- installed\n{installed_def}\n--- file\n{from_file}"
    return None


def trigger_difference(cursor, name: str, text: str) -> str | None:
    """How the trigger `text` defines differs from the installed `name`, or None: the file's
    statement replaces the trigger inside the test's transaction, and pg_get_triggerdef renders it
    before and after (a file that names another table adds a second trigger, which counts too)."""
    query = "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal"
    cursor.execute(query, [name])
    before = [row[0] for row in cursor.fetchall()]
    if len(before) != 1:
        return f"{len(before)} installed triggers named {name}"
    cursor.execute(text)
    cursor.execute(query, [name])
    after = [row[0] for row in cursor.fetchall()]
    if after != before:
        return f"definition differs:\n--- installed\n{before[0]}\n--- file\n{after}"
    return None


def migration_references() -> dict[str, set[tuple[str, int]]]:
    """(object, version) of every file each capacity migration names through the loader, read
    from the migrations' source, so a reference is seen whether or not its file exists."""
    references: dict[str, set[tuple[str, int]]] = {}
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        found = references.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if func not in LOADERS:
                continue
            args = [arg.value if isinstance(arg, ast.Constant) else None for arg in node.args]
            assert args and all(arg is not None for arg in args), (
                f"{path.name}:{node.lineno}: name SQL files by literal name and version, so that this"
                " test can check them"
            )
            found.update((args[0], args[index]) for index in LOADERS[func])
    return references


# --- the newest files are what is installed -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(newest()))
def test_the_newest_file_of_each_object_is_installed(name):
    # Given the newest file of an object, and the test database migrated by the migrations
    version = newest()[name]
    text = sql_read(name, version)
    kind, defined = statement(text)
    assert defined == name, f"{name}.v{version}.sql defines {defined}"

    # When it is compared with what the database has
    with connection.cursor() as cursor:
        difference = (function_difference if kind == "FUNCTION" else trigger_difference)(cursor, name, text)

    # Then they are the same
    assert difference is None, f"{name}.v{version}.sql is not what the migrations installed: {difference}"


def test_a_function_changed_in_its_file_only_is_noticed():
    # Given the installed allocator, and its newest file with one condition changed
    text = sql_read("capacity_place", newest()["capacity_place"])
    changed = text.replace("n.state = 'ready'", "n.state = 'draining'", 1)
    assert changed != text

    # When the changed text is compared with the database
    with connection.cursor() as cursor:
        difference = function_difference(cursor, "capacity_place", changed)
        unchanged = function_difference(cursor, "capacity_place", text)

    # Then the change is reported, and the unchanged text is not
    assert difference and "capacity_place" in difference
    assert unchanged is None


def test_a_function_whose_header_changed_is_noticed():
    # Given the newest give-back with its SET clause dropped (a change prosrc does not show)
    text = sql_read("capacity_allocations_give_back", newest()["capacity_allocations_give_back"])
    changed = text.replace(" SET plan_cache_mode = force_generic_plan", "", 1)
    assert changed != text

    # When it is compared with the database
    with connection.cursor() as cursor:
        difference = function_difference(cursor, "capacity_allocations_give_back", changed)

    # Then the definitions differ
    assert difference and "definition differs" in difference


def test_a_trigger_changed_in_its_file_only_is_noticed():
    # Given the region trigger, changed to fire on another column
    text = sql_read("capacity_node_nodecapacity_region", newest()["capacity_node_nodecapacity_region"])
    changed = text.replace("AFTER UPDATE OF region_id", "AFTER UPDATE OF region_id, hostname", 1)
    assert changed != text

    # When it is compared with the database
    with connection.cursor() as cursor:
        difference = trigger_difference(cursor, "capacity_node_nodecapacity_region", changed)

    # Then the change is reported
    assert difference and "hostname" in difference


def recorded_checksums() -> dict[str, str]:
    lines = (Path(SQL_DIR) / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    return {file: digest for digest, file in (line.split("  ", 1) for line in lines if line.strip())}


def test_no_file_changed_after_its_checksum_was_recorded():
    # Given the checksums recorded when each file was added (sha256sum's format)
    recorded = recorded_checksums()

    # When every SQL file is hashed
    actual = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for versions in sql_files().values()
        for path in versions.values()
    }

    # Then each matches, and each file has exactly one record
    unrecorded = sorted(set(actual) - set(recorded))
    assert not unrecorded, f"record new files: cd apps/capacity/sql && sha256sum {' '.join(unrecorded)} >> SHA256SUMS"
    assert sorted(set(recorded) - set(actual)) == [], "SHA256SUMS names files that do not exist"
    changed = sorted(name for name in actual if actual[name] != recorded[name])
    assert changed == [], (
        f"{changed} changed after a migration loaded them; databases migrated before would keep the old"
        " text. Restore them and put the change in a new version with a migration (apps/capacity/sql/README.md)."
    )


# --- migrations and files name each other ---------------------------------------------------------


def test_every_file_a_migration_names_exists():
    # Given the files each capacity migration loads
    references = migration_references()
    assert all(
        references[m]
        for m in (
            "0002_node_capacity",
            "0003_allocator_claim",
            "0004_allocation_give_back",
            "0005_give_back_lock_order",
        )
    ), references

    # When each is looked up
    missing = {
        (migration, name, version)
        for migration, named in references.items()
        for name, version in named
        if version not in sql_files().get(name, {})
    }

    # Then all are there
    assert missing == set()


def test_every_file_is_loaded_by_a_migration():
    # Given every SQL file, and every file the migrations load
    files = {(name, version) for name, versions in sql_files().items() for version in versions}
    loaded = set().union(*migration_references().values())

    # When they are compared
    # Then none is left out: a new version without a migration would never reach a database
    assert files - loaded == set()


def test_a_missing_file_is_named_in_the_error():
    # Given an object and version that have no file
    # When a migration would load it
    # Then the error names the file it looked for
    with pytest.raises(FileNotFoundError, match=r"capacity_place\.v999\.sql"):
        sql_read("capacity_place", 999)


def test_the_loader_keeps_the_files_text():
    # Given a file as stored
    stored = (Path(SQL_DIR) / "capacity_place.v1.sql").read_text(encoding="utf-8")

    # When it is read, as a replacement, as a first creation, and as a replacement operation
    replace = sql_read("capacity_place", 1)
    create = sql_read("capacity_place", 1, create=True)
    operation = sql_replace("capacity_allocations_give_back", 2, 1)

    # Then only the first creation's verb changes, and the operation runs each version whole
    assert replace == stored
    assert create == "CREATE " + stored.removeprefix("CREATE OR REPLACE ")
    assert operation.sql == sql_join(sql_read("capacity_allocations_give_back", 2))
    assert operation.reverse_sql == sql_join(sql_read("capacity_allocations_give_back", 1))
