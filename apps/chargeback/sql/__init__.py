"""The chargeback app's server-side SQL: the roll-up's fold functions, one file per function and
version, loaded by the migrations that install them (see README.md beside this file).

The layout and rules are capacity's (apps/capacity/sql/): each file holds one `CREATE OR REPLACE`
statement, a file once loaded by a migration is never edited (a change is a new version and a new
migration, `sql_replace`), SHA256SUMS records each file as added, and
tests/chargeback/test_sql_files.py holds the files to it and to the database. Capacity's loader
reads its own folder only (its functions take no directory), so the few that name files are
repeated here for this one; `sql_join`, which names none, is capacity's.
"""

import re
from pathlib import Path

from django.db import migrations

from apps.capacity.sql import sql_join

SQL_DIR = Path(__file__).resolve().parent

_FILE_NAME = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.sql$")

__all__ = ["SQL_DIR", "sql_files", "sql_join", "sql_path", "sql_read", "sql_replace"]


def sql_path(name: str, version: int) -> Path:
    return SQL_DIR / f"{name}.v{version}.sql"


def sql_read(name: str, version: int, *, create: bool = False) -> str:
    """The file's statement, exactly as stored; create=True spells it `CREATE …` (the migration
    that first makes the function: finding it already there is an error worth stopping for)."""
    path = sql_path(name, version)
    if not path.is_file():
        # Named plainly: otherwise a typo in a migration surfaces deep inside Django's loader.
        raise FileNotFoundError(f"no SQL file {path.name} in {SQL_DIR} (object {name!r}, version {version})")
    text = path.read_text(encoding="utf-8")
    if create:
        if not text.startswith("CREATE OR REPLACE "):
            raise ValueError(f"{path.name} does not start with 'CREATE OR REPLACE '")
        text = "CREATE " + text[len("CREATE OR REPLACE ") :]
    return text


def sql_replace(name: str, version: int, previous: int) -> migrations.RunSQL:
    """A migration operation replacing `name` at `previous` by `version`, and back when unapplied
    (CREATE OR REPLACE both ways: a signature change needs a DROP of its own instead)."""
    return migrations.RunSQL(sql_join(sql_read(name, version)), sql_join(sql_read(name, previous)))


def sql_files() -> dict[str, dict[int, Path]]:
    """Every SQL file here, by function name and version."""
    found: dict[str, dict[int, Path]] = {}
    for path in SQL_DIR.glob("*.sql"):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: SQL files are named <object>.v<version>.sql")
        found.setdefault(match["name"], {})[int(match["version"])] = path
    return found
