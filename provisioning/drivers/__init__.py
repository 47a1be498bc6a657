"""How a workload becomes real on one kind of infrastructure.

Each driver declares the offering kinds it serves; an offering is launchable exactly when some
registered driver serves its kind. This package never imports Django nor `apps.*`: a driver
answers questions with plain data, and provisioning/tasks.py acts on the answers.
"""

from .base import KNOWN_OFFERING_KINDS, Driver, PlacementNeeds, WorkloadFacts
from .registry import (
    driver_register,
    driver_unregister,
    drivers_for_kind,
    drivers_registered,
    form_launchable_kinds,
    launchable_kinds,
)

__all__ = [
    "KNOWN_OFFERING_KINDS",
    "Driver",
    "PlacementNeeds",
    "WorkloadFacts",
    "driver_register",
    "driver_unregister",
    "drivers_for_kind",
    "drivers_registered",
    "form_launchable_kinds",
    "launchable_kinds",
]
