"""The baseline: a bare Jupyter server started the way the agent starts one, without the portal."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devtools.processes import free_port
from provisioning.agent.workloads.identity import account_create, account_remove

from .config import POLL_S, BenchError
from .measure import DetailPoller
from .processes import Stack, group_kill


def bare_start_time(*, stack: Stack, program: str, poller: DetailPoller | None = None) -> float:
    """Seconds from spawning a bare Jupyter server ("lab": JupyterLab, "server": jupyter_server
    without extensions) until GET /api/status with its token is 200 (with `poller`, while the
    client's detail polling runs)."""
    if poller is not None:
        with poller:
            return bare_start_time(stack=stack, program=program)
    home = Path(tempfile.mkdtemp(prefix="bench-launch-bare-"))
    stack.bare_dirs.append(home)
    # An account of its own, as the agent gives every server (itself when not root); made before
    # the clock starts, as the agent's warm pool does.
    run_as = account_create(workload_root=home, home=home)
    dirs = {
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "IPYTHONDIR": home / "ipython",
    }
    for directory in [*dirs.values(), home / "work"]:
        directory.mkdir(mode=0o700)
    if run_as.switch:
        for path in [home, *home.rglob("*")]:
            os.chown(path, run_as.uid, run_as.gid)
    token, port = secrets.token_hex(24), free_port()
    env = {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")]),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "USER": run_as.name,
        "JUPYTER_TOKEN": token,
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
        **{k: str(v) for k, v in dirs.items()},
    }
    module = "jupyterlab"
    if program == "server":
        module, env["JUPYTER_NO_CONFIG"] = "jupyter_server", "1"  # no server extensions
    argv = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={home / 'work'}",
    ]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"})
    with open(home / "jupyter.log", "wb") as output:
        began = time.perf_counter()
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
            **run_as.popen_kwargs(),
        )
    stack.bare_children.append(popen)
    try:
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - began
            except OSError:
                pass
            if popen.poll() is not None:
                raise BenchError(f"bare {module} exited: {(home / 'jupyter.log').read_text()[-1000:]}")
            if time.perf_counter() - began > 60:
                raise BenchError(f"bare {module} did not answer within 60 s")
            time.sleep(POLL_S)
    finally:
        group_kill(popen)
        stack.bare_children.remove(popen)
        account_remove(run_as)
        shutil.rmtree(home, ignore_errors=True)
        stack.bare_dirs.remove(home)
