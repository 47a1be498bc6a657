"""The capacity app's server-side SQL: one file per database object and version, loaded by the
migrations that install it (see README.md beside this file).

Each file holds one statement, written `CREATE OR REPLACE …` so that the newest file of an object
is its current definition and can be read (or re-applied) on its own. A migration composes files
into the script it runs; history stays reproducible because a file, once a migration loads it, is
never edited: a change is a new version and a new migration (`sql_replace`). SHA256SUMS records
each file as added; tests/capacity/test_sql_files.py holds the files to it and to the database.
"""

import re
from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent

_FILE_NAME = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.sql$")


def sql_path(name: str, version: int) -> Path:
    return SQL_DIR / f"{name}.v{version}.sql"


def sql_read(name: str, version: int, *, create: bool = False) -> str:
    """The file's statement, exactly as stored. create=True spells it `CREATE …` instead of
    `CREATE OR REPLACE …`, as the migrations that first made an object did: there, finding the
    object already present is an error worth stopping for, not something to overwrite."""
    path = sql_path(name, version)
    if not path.is_file():
        # Named plainly: otherwise a typo in a migration surfaces as an import error deep inside
        # Django's migration loader.
        raise FileNotFoundError(f"no SQL file {path.name} in {SQL_DIR} (object {name!r}, version {version})")
    text = path.read_text(encoding="utf-8")
    if create:
        if not text.startswith("CREATE OR REPLACE "):
            raise ValueError(f"{path.name} does not start with 'CREATE OR REPLACE '")
        text = "CREATE " + text[len("CREATE OR REPLACE ") :]
    return text


def sql_join(*statements: str) -> str:
    """One script of several statements, each on its own lines with a blank line between them:
    the layout the migrations' SQL has always had, so the text they run is unchanged."""
    return "\n" + "\n".join(statements)


def sql_replace(name: str, version: int, previous: int) -> migrations.RunSQL:
    """A migration operation that replaces `name` at `previous` by `version`, and back again when
    the migration is unapplied. Both directions are CREATE OR REPLACE, so a signature change (which
    would leave the old function behind as an overload) needs a DROP of its own instead."""
    return migrations.RunSQL(sql_join(sql_read(name, version)), sql_join(sql_read(name, previous)))


def sql_files() -> dict[str, dict[int, Path]]:
    """Every SQL file here, by object name and version."""
    found: dict[str, dict[int, Path]] = {}
    for path in SQL_DIR.glob("*.sql"):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: SQL files are named <object>.v<version>.sql")
        found.setdefault(match["name"], {})[int(match["version"])] = path
    return found
