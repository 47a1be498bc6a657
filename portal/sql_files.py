"""Server-side SQL kept in versioned files, one folder per app: the loader the apps' `sql`
packages (apps/capacity/sql/, apps/chargeback/sql/) and their migrations use.

Each file holds one statement, `<object>.v<version>.sql`, written `CREATE OR REPLACE …` so that the
newest file of an object is its current definition and can be read (or re-applied) on its own. A
migration composes files into the script it runs; history stays reproducible because a file, once
a migration loads it, is never edited: a change is a new version and a new migration
(`replace`). Each app's SHA256SUMS records its files as added, and its tests/<app>/test_sql_files.py
holds the files to it and to the database.

Rank 0 (portal's library, tests/portal/test_import_layers.py): it knows no app, only the folder
it is given, so any app may use it.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.db import migrations

_FILE_NAME = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.sql$")


def sql_join(*statements: str) -> str:
    """One script of several statements, each on its own lines with a blank line between them:
    the layout the migrations' SQL has always had, so the text they run is unchanged."""
    return "\n" + "\n".join(statements)


class SqlFiles:
    """The SQL files of one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str, version: int) -> Path:
        return self.folder / f"{name}.v{version}.sql"

    def read(self, name: str, version: int, *, create: bool = False) -> str:
        """The file's statement, exactly as stored. create=True spells it `CREATE …` instead of
        `CREATE OR REPLACE …`, as the migrations that first made an object did: there, finding the
        object already present is an error worth stopping for, not something to overwrite."""
        path = self.path(name, version)
        if not path.is_file():
            # Named plainly: otherwise a typo in a migration surfaces as an import error deep
            # inside Django's migration loader.
            raise FileNotFoundError(f"no SQL file {path.name} in {self.folder} (object {name!r}, version {version})")
        text = path.read_text(encoding="utf-8")
        if create:
            if not text.startswith("CREATE OR REPLACE "):
                raise ValueError(f"{path.name} does not start with 'CREATE OR REPLACE '")
            text = "CREATE " + text[len("CREATE OR REPLACE ") :]
        return text

    def replace(self, name: str, version: int, previous: int) -> migrations.RunSQL:
        """A migration operation that replaces `name` at `previous` by `version`, and back again
        when the migration is unapplied. Both directions are CREATE OR REPLACE, so a signature
        change (which would leave the old function behind as an overload) needs a DROP of its own
        instead."""
        return migrations.RunSQL(sql_join(self.read(name, version)), sql_join(self.read(name, previous)))

    def files(self) -> dict[str, dict[int, Path]]:
        """Every SQL file of the folder, by object name and version."""
        found: dict[str, dict[int, Path]] = {}
        for path in self.folder.glob("*.sql"):
            match = _FILE_NAME.match(path.name)
            if match is None:
                raise ValueError(f"{path.name}: SQL files are named <object>.v<version>.sql")
            found.setdefault(match["name"], {})[int(match["version"])] = path
        return found
