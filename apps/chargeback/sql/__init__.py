"""The chargeback app's server-side SQL: the roll-up's fold functions, one file per function and
version, loaded by the migrations that install them (see README.md beside this file).

The layout and rules are capacity's (apps/capacity/sql/): each file holds one `CREATE OR REPLACE`
statement, a file once loaded by a migration is never edited (a change is a new version and a new
migration, `sql_replace`), SHA256SUMS records each file as added, and
tests/chargeback/test_sql_files.py holds the files to it and to the database. The loader is
portal.sql_files's, bound to this folder.
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
