"""Marks for tests that run SSH workloads for real: the agent creates one account per instance
(so it must be root) and starts Debian's OpenSSH sshd, which the test reaches with the `ssh`
client. `make test` installs openssh-server; elsewhere these tests say why they were skipped."""

from __future__ import annotations

import os
import shutil

import pytest

from provisioning.agent.workloads.ssh import ssh_available

NEEDS_ROOT_AND_OPENSSH = [
    pytest.mark.skipif(os.geteuid() != 0, reason="per-instance accounts need the agent to be root"),
    pytest.mark.skipif(
        ssh_available() is not None or shutil.which("ssh") is None,
        reason="OpenSSH (server and client) is not installed",
    ),
]
