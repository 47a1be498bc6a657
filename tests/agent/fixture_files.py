"""The committed NVML fixtures: hand-written examples and captures from real GPU hosts."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
HANDWRITTEN = FIXTURES / "nvml_handwritten_example.json"


def fixture_load(path: Path) -> dict:
    return json.loads(path.read_text())


# Every fixture with raw NVML reads (inventory and telemetry); a new `nvml_<gpu>_capture.json`
# joins the tests by existing. Other captures (the health check's) carry only an inventory read.
ALL_FIXTURES = sorted(path for path in FIXTURES.glob("*.json")
                      if {"inventory_raw", "telemetry_raw"} <= fixture_load(path).keys())
CAPTURES = [path for path in ALL_FIXTURES if path.name.endswith("_capture.json")]
