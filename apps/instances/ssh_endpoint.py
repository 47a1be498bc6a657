"""Where a running SSH instance (gpu_slice today, bare metal next) is logged in to: the one place
the instance page's partial and the API's `ssh` field read it from, so the command a person copies
from the page and the one a script reads from the API never differ.

Kind-agnostic on purpose: the endpoint exists exactly when the instance runs and its agent reported
one (InstanceRuntime.ssh_*, cleared when it stops), whatever kind of SSH workload it is."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Instance, InstanceRuntime, InstanceState


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    host_key: str | None  # "ssh-ed25519 AAAA…", as the agent reported the instance's sshd's key

    @property
    def command(self) -> str:
        return f"ssh -p {self.port} {self.user}@{self.host}"

    @property
    def known_hosts(self) -> str | None:
        """The ~/.ssh/known_hosts line for a non-default port, so the first login need not trust
        blindly; None when the agent reported no host key."""
        return f"[{self.host}]:{self.port} {self.host_key}" if self.host_key else None

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "command": self.command,
            "known_hosts": self.known_hosts,
        }


def instance_ssh_endpoint(*, instance: Instance, runtime: InstanceRuntime | None = None) -> SshEndpoint | None:
    """The instance's SSH endpoint while it runs, else None. Reads no rows when `runtime` is given
    or was loaded with the instance (select_related("runtime"), as the selectors do)."""
    if instance.state != InstanceState.RUNNING:
        return None
    if runtime is None:
        # A reverse one-to-one without a row raises (an AttributeError subclass) rather than None.
        runtime = getattr(instance, "runtime", None)
    if runtime is None or not (runtime.ssh_host and runtime.ssh_port and runtime.ssh_user):
        return None
    return SshEndpoint(
        host=runtime.ssh_host, port=runtime.ssh_port, user=runtime.ssh_user, host_key=runtime.ssh_host_key or None
    )
