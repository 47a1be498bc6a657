"""What a notebook launched through the real agent saw on a real 2×H200 host (captured by
tests/agent/gpu_notebook_check.py, which needs a GPU and so does not run in CI). These checks
keep the committed evidence honest: they fail if the capture shows anything but exactly the
allocated GPU, a working CUDA matrix multiply, and a kernel not running as root."""

import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "gpu_notebook_2xh200.json"


@pytest.fixture(scope="module")
def capture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_the_kernel_saw_exactly_the_allocated_gpu(capture):
    kernel = capture["kernel"]
    assert len(capture["host_gpus"]) == 2 and capture["allocated_gpu"] == capture["host_gpus"][1]
    assert kernel["CUDA_VISIBLE_DEVICES"] == capture["allocated_gpu"]
    assert kernel["device_count"] == 1 and kernel["device_uuid"] == capture["allocated_gpu"]


def test_the_cuda_matrix_multiply_ran_and_was_right(capture):
    kernel = capture["kernel"]
    assert kernel["device_name"] == "NVIDIA H200"
    assert kernel["matmul_tflops"] > 100  # a GPU, not a CPU fallback
    # bf16 inputs, fp32 reference: errors stay within bf16 rounding of values up to ~400.
    assert kernel["max_abs_error_vs_fp32_128x128"] < 0.01 * kernel["reference_max_abs_128x128"]


def test_the_notebook_did_not_run_as_root(capture):
    assert capture["kernel"]["kernel_uid"] != 0
