"""The capacity app's server-side SQL: one file per database object and version, loaded by the
migrations that install it (see README.md beside this file).

Each file holds one statement, written `CREATE OR REPLACE …` so that the newest file of an object
is its current definition and can be read (or re-applied) on its own. A migration composes files
into the script it runs; history stays reproducible because a file, once a migration loads it, is
never edited: a change is a new version and a new migration (`sql_replace`). SHA256SUMS records
each file as added; tests/capacity/test_sql_files.py holds the files to it and to the database.

The loader is portal.sql_files's, bound to this folder; the names below are the ones the
migrations and tests import from here.
"""

from pathlib import Path

from portal.sql_files import SqlFiles, sql_join

SQL_DIR = Path(__file__).resolve().parent

_FILES = SqlFiles(SQL_DIR)
sql_path = _FILES.path
sql_read = _FILES.read
sql_replace = _FILES.replace
sql_files = _FILES.files

__all__ = ["SQL_DIR", "sql_files", "sql_join", "sql_path", "sql_read", "sql_replace"]
