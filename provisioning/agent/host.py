"""Facts about the host itself that need no NVML: name, CPUs, memory and disk.

Only the standard library, so a GPU host needs nothing installed beyond nvidia-ml-py.
"""

from __future__ import annotations

import os
import shutil
import socket


def host_facts_read(hostname: str | None = None, disk_path: str = "/") -> dict:
    """{"hostname", "cpus", "ram_bytes", "disk_bytes"}; `hostname` overrides the real one."""
    return {
        "hostname": hostname or socket.gethostname(),
        "cpus": cpu_count_read(),
        "ram_bytes": ram_bytes_read(),
        "disk_bytes": disk_bytes_read(disk_path),
    }


def cpu_count_read() -> int:
    # The CPUs this process may run on (cgroups/taskset), which is what a workload can get.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def ram_bytes_read() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        import psutil  # only where sysconf lacks these names (not Linux)

        return int(psutil.virtual_memory().total)


def disk_bytes_read(path: str = "/") -> int:
    return shutil.disk_usage(path).total
