"""How a workload becomes real on one kind of infrastructure.

Each driver declares the offering kinds it serves; an offering is launchable exactly when some
registered driver serves its kind. This package never imports Django, so the node agent and
workers can use it without the portal's settings.
"""

from .base import KNOWN_OFFERING_KINDS, Driver
from .registry import driver_register, driver_unregister, drivers_for_kind, drivers_registered, launchable_kinds

__all__ = [
    "KNOWN_OFFERING_KINDS",
    "Driver",
    "driver_register",
    "driver_unregister",
    "drivers_for_kind",
    "drivers_registered",
    "launchable_kinds",
]
