"""Development and test tooling, kept out of the installed package (pyproject's packages.find
lists portal, apps and provisioning only): the launcher of `make run`, the pytest plugin of
`make test`, embedded PostgreSQL/Redis, localstripe with its additions, the nginx front proxy's
local configuration, and process helpers the tests and benchmarks share.

It may import the portal's code; nothing under portal/, apps/ or provisioning/ imports it
(tests/portal/test_packaging.py checks that)."""
