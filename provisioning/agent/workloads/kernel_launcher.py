"""Kernel entry point: set CUDA_VISIBLE_DEVICES from the slot's assignment file, then run ipykernel.

    python kernel_launcher.py <assignment file> -f <connection file>

The notebook server's kernelspec runs this instead of `ipykernel_launcher` directly. The GPUs are
read when the kernel starts, not when the server started: a warm-pool server starts before it has
an assignment, and the agent writes the file when it hands the server out. A missing or empty
file means no GPUs (CUDA_VISIBLE_DEVICES=""), never all of them.

The agent copies this file into each server's slot directory, so it must stay standalone
(standard library only, no package imports): the workload user may not be able to read the
agent's own installation.
"""

import os
import sys


def assignment_read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return ""
    return ",".join(part.strip() for part in text.split(",") if part.strip())


def main(argv: list) -> None:
    if len(argv) < 2:
        sys.exit("usage: kernel_launcher.py <assignment file> -f <connection file>")
    os.environ["CUDA_VISIBLE_DEVICES"] = assignment_read(argv[1])
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *argv[2:]])


if __name__ == "__main__":
    main(sys.argv)
