"""On a GPU host: the node health check (provisioning/agent/health.py) on the REAL GPUs — NVML
health facts and a CUDA matrix multiply per GPU verified against a float64 CPU reference.

    PYTHONPATH=. python3 -m tests.agent.gpu_health_check OUT_DIR

Needs nvidia-ml-py and torch with CUDA. It also checks, as the control that the comparison can
fail, that a deliberately corrupted product is caught by the same tolerance. Writes
OUT_DIR/gpu_health.json (the check's payload, the raw NVML read, host and library versions) for
committing under tests/agent/fixtures/ (e.g. as gpu_health_h100.json). Exit status 0 only when
the check passed with CUDA really run.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from provisioning.agent.health import MATMUL_TOLERANCE, node_health_check
from provisioning.agent.nvml import nvml_inventory_read


def _corruption_is_caught() -> dict:
    """One flipped element in a GPU product must exceed the tolerance (else the check is blind)."""
    import torch  # on the GPU host only; this script is never imported by the test suite

    a = torch.randn(256, 256, dtype=torch.float32)
    b = torch.randn(256, 256, dtype=torch.float32)
    reference = a.double() @ b.double()
    product = (a.cuda() @ b.cuda()).double().cpu()
    product[7, 11] += 1.0
    error = float((product - reference).abs().max()) / float(reference.abs().max())
    return {"relative_error": error, "caught": error > MATMUL_TOLERANCE}


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = nvml_inventory_read()
    result = node_health_check(raw)
    try:
        import torch

        versions = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
        control = _corruption_is_caught()
    except Exception as exc:  # recorded: the fixture says what could not run and why
        versions, control = {}, {"error": f"{type(exc).__name__}: {exc}"}
    record = {
        "source": {"host": platform.node(), "python": sys.version.split()[0], **versions},
        "health_check": result.to_payload(),
        "corruption_control": control,
        "inventory_raw": raw,
    }
    (out / "gpu_health.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record["health_check"], indent=2))
    return 0 if result.passed and result.cuda_ran and control.get("caught") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
