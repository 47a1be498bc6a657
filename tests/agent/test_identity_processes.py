"""Finding a workload account's processes to kill: a zombie is not one (it runs nothing and only
its parent can reap it), so stopping a workload never waits on one."""

import os
import subprocess
import time

from provisioning.agent.workloads.identity import _uid_of


def test_a_zombie_has_no_uid_to_kill_and_a_live_process_has_its_own():
    # Given a child that exited and was not reaped yet (a zombie), and one that runs
    zombie = subprocess.Popen(["true"])
    running = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while "Z" not in open(f"/proc/{zombie.pid}/stat").read().split(")")[1].split()[0]:
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        # Then the zombie is passed over, and the live one is found by its real uid
        assert _uid_of(zombie.pid) is None
        assert _uid_of(running.pid) == os.getuid()
    finally:
        running.kill()
        running.wait()
        zombie.wait()
