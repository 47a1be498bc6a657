"""Which drivers exist in this process, and so which offering kinds can be launched.

Drivers register when their module is imported at start-up (for instance from an AppConfig's
ready()). Nothing is registered by default: an offering whose kind no driver serves is shown in
the catalog but cannot be launched.
"""

from __future__ import annotations

from .base import KNOWN_OFFERING_KINDS, Driver

_drivers: dict[str, Driver] = {}


def driver_register(driver: Driver) -> Driver:
    """Register `driver` under its name and return it.

    Registering the same object again is a no-op, so a module imported twice does no harm; a
    different driver under a taken name is a programming error and raises.
    """
    if not isinstance(driver, Driver):
        raise TypeError(f"{driver!r} is not a provisioning Driver")
    name = getattr(driver, "name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{driver!r} needs a non-empty name")
    kinds = getattr(driver, "offering_kinds", None)
    if not isinstance(kinds, frozenset) or not kinds:
        raise ValueError(f"driver {name!r} must declare offering_kinds as a non-empty frozenset")
    unknown = kinds - KNOWN_OFFERING_KINDS
    if unknown:
        raise ValueError(
            f"driver {name!r} declares unknown offering kinds {sorted(unknown)}; "
            f"known: {sorted(KNOWN_OFFERING_KINDS)}"
        )
    existing = _drivers.get(name)
    if existing is not None and existing is not driver:
        raise ValueError(f"a different driver is already registered as {name!r}")
    _drivers[name] = driver
    return driver


def driver_unregister(name: str) -> None:
    """Forget the driver called `name`, if any (tests and hot reload)."""
    _drivers.pop(name, None)


def drivers_for_kind(kind: str) -> tuple[Driver, ...]:
    """The drivers that can launch offerings of `kind`, in registration order."""
    return tuple(d for d in _drivers.values() if kind in d.offering_kinds)


def launchable_kinds() -> frozenset[str]:
    return frozenset().union(*(d.offering_kinds for d in _drivers.values()))


def form_launchable_kinds() -> frozenset[str]:
    """The launchable kinds the portal's launch form offers (the rest: through the API)."""
    return frozenset().union(*(d.offering_kinds for d in _drivers.values() if d.form_launchable))


def drivers_registered() -> tuple[Driver, ...]:
    """Every registered driver, in registration order."""
    return tuple(_drivers.values())


def driver_for_kind(kind: str) -> Driver:
    """The driver that launches offerings of `kind` (the first registered); LookupError if none."""
    drivers = drivers_for_kind(kind)
    if not drivers:
        raise LookupError(f"No driver serves {kind}")
    return drivers[0]
