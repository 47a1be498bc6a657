"""The local fleet of `make run`: which node agents it starts, read from the environment.

    PORTAL_FLEET=8xH100-80GB,4xA100-80GB,mig=3g.40gb*2    one host per GPU spec (agent --simulate)
    PORTAL_FLEET_HOSTS=3                                  the default hosts, repeated, 3 of them

A `mig=` item belongs to the host before it (the agent's own spec grammar, `<count>x<MODEL>[,mig=…]`,
has commas too); `nvml` is this host's real GPUs, at most once. By default the fleet is the two
hosts of DEFAULT_FLEET; on a host with NVIDIA GPUs the first of them is the real one instead.

Each host is its own agent process, as it would be on its own machine: its own hostname, its own
loopback address (127.0.1.<n>, which every Linux host has: 127/8 is all loopback), its own SSH port
range, and its own folder under the data folder for its state file and workload root. Host 1
keeps the folder and hostname the single local agent had, so an existing data folder resumes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provisioning.agent.nvml import nvml_available
from provisioning.agent.simulate import simulation_spec_parse

FLEET_VARIABLE, HOSTS_VARIABLE = "PORTAL_FLEET", "PORTAL_FLEET_HOSTS"
NVML = "nvml"
# 8 H100s, and 4 A100s each split by MIG into 3g.40gb + 2g.20gb + 2 × 1g.10gb (all 7 slices).
DEFAULT_FLEET = ("8xH100-80GB", "4xA100-80GB,mig=3g.40gb+2g.20gb+1g.10gb*2")
MAX_HOSTS = 16  # each is a process with a notebook pool: plenty for one machine
SSH_PORT_BASE, SSH_PORTS_PER_HOST = 22000, 100


class FleetError(ValueError):
    """A fleet variable that cannot be used; its message is one line naming the variable."""


@dataclass(frozen=True)
class FleetHost:
    number: int  # 1, 2, …
    simulate: str | None  # the agent's --simulate spec; None: this host's real GPUs (NVML)

    @property
    def name(self) -> str:
        return "agent" if self.number == 1 else f"agent-{self.number}"

    @property
    def hostname(self) -> str | None:
        if self.simulate is None:
            return None  # the real hostname, as the agent reads it
        return "local-simulated-node" if self.number == 1 else f"local-simulated-node-{self.number}"

    @property
    def address(self) -> str:
        return f"127.0.1.{self.number}"

    @property
    def ssh_ports(self) -> tuple[int, int]:
        first = SSH_PORT_BASE + (self.number - 1) * SSH_PORTS_PER_HOST
        return first, first + SSH_PORTS_PER_HOST - 1

    def folder(self, root: Path) -> Path:
        """Its state file and workload root live here (host 1: the single agent's old folder)."""
        return root / self.name

    def describe(self) -> str:
        first, last = self.ssh_ports
        what = f"SIMULATED {self.simulate}" if self.simulate else "this host's GPUs (NVML)"
        return f"{self.hostname or 'this host'} at {self.address}, SSH ports {first}-{last}: {what}"


def fleet_from_env(environ: dict[str, str], *, gpus_here: bool | None = None) -> list[FleetHost]:
    """The hosts to start; FleetError (one line) for a value that cannot be used."""
    fleet, hosts = environ.get(FLEET_VARIABLE, "").strip(), environ.get(HOSTS_VARIABLE, "").strip()
    if fleet and hosts:
        raise FleetError(f"set {FLEET_VARIABLE} or {HOSTS_VARIABLE}, not both")
    if gpus_here is None:
        gpus_here = nvml_available()
    if fleet:
        specs = _specs_parse(fleet)
    else:
        count = _count_parse(hosts) if hosts else len(DEFAULT_FLEET)
        specs = [DEFAULT_FLEET[i % len(DEFAULT_FLEET)] for i in range(count)]
        if gpus_here:
            specs[0] = None  # the real GPUs in place of the first simulated host, as before fleets
    if None in specs and not gpus_here:
        raise FleetError(f"{FLEET_VARIABLE} asks for '{NVML}', but NVML finds no NVIDIA GPU here")
    return [FleetHost(number=i + 1, simulate=spec) for i, spec in enumerate(specs)]


def _count_parse(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= MAX_HOSTS:
        raise FleetError(f"{HOSTS_VARIABLE}={text!r}: expected a number of hosts from 1 to {MAX_HOSTS}")
    return int(text)


def _specs_parse(text: str) -> list[str | None]:
    """`8xH100-80GB,4xA100-80GB,mig=1g.10gb*7,nvml` -> ["8xH100-80GB", "4xA100-80GB,mig=1g.10gb*7", None]"""
    specs: list[str | None] = []
    for item in (part.strip() for part in text.split(",")):
        if item.lower() == NVML:
            if None in specs:
                raise FleetError(f"{FLEET_VARIABLE}: '{NVML}' (this host's real GPUs) can be one host only")
            specs.append(None)
        elif item[:1].isdigit():
            specs.append(item)
        elif item.lower().startswith("mig=") and specs and specs[-1] is not None:
            specs[-1] = f"{specs[-1]},{item}"
        else:
            raise FleetError(
                f"{FLEET_VARIABLE}={text!r}: {item!r} is not a host; expected GPU specs such as "
                f"8xH100-80GB or 4xA100-80GB,mig=1g.10gb*7 (or '{NVML}'), separated by commas"
            )
    if len(specs) > MAX_HOSTS:
        raise FleetError(f"{FLEET_VARIABLE}: {len(specs)} hosts; at most {MAX_HOSTS}")
    for number, spec in enumerate(specs, start=1):
        if spec is not None:
            try:
                simulation_spec_parse(spec)
            except ValueError as exc:
                raise FleetError(f"{FLEET_VARIABLE}, host {number}: {exc}") from None
    return specs
