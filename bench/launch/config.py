"""What the launch benchmark launches, how long it waits, and the goals it reports against."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATABASE = "bench_launch"
SIMULATE = "8xH100-80GB"
HOSTNAME = "bench-launch-node"
FLAVOR = "notebooks/notebook-1x-h100"
IMAGE = "jupyterlab-4-host"
REGION = "us-east-1"
POLL_S = 0.02  # the client's polling interval (detail API, then the notebook URL)
LAUNCH_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
POOL_TIMEOUT_S = 90.0
POOL_GOAL_S = 1.0
COLD_GOAL_RATIO = 1.3


class BenchError(RuntimeError):
    """Printed as one line by the command; a launch that raises it is counted as failed."""
