"""Heartbeat benchmark: the portal's CPU seconds per minute while 1,250 node agents report.

    .venv/bin/python -m bench.heartbeat [--agents 1250] [--interval 10] [--duration 60]

See bench/README.md ("Heartbeat") for what it runs, what it counts and how to read it.
Modules: `__main__` (phases and report), `portal` (database and web process), `load` (the load
generator, a separate process without Django), `cpu` (whose CPU is the portal's).
"""
