"""The driver registry decides which offering kinds can be launched."""

import subprocess
import sys
from pathlib import Path

import pytest

from apps.catalog.models import OfferingKind
from provisioning.drivers import KNOWN_OFFERING_KINDS, drivers_for_kind, launchable_kinds

from .conftest import FakeDriver

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_nothing_is_launchable_until_a_driver_registers():
    # given the registry as the portal starts it
    # when / then no kind has a driver
    assert launchable_kinds() == frozenset()
    assert drivers_for_kind("notebook") == ()


def test_a_registered_driver_makes_its_kinds_launchable(register_driver):
    # given a driver for notebooks and Ray
    driver = register_driver("notebook", "ray")

    # then exactly those kinds are launchable, served by that driver
    assert launchable_kinds() == {"notebook", "ray"}
    assert drivers_for_kind("ray") == (driver,)
    assert drivers_for_kind("bare_metal") == ()


def test_a_driver_with_an_unknown_kind_is_refused():
    from provisioning.drivers import driver_register

    # given a driver that misspells its kind
    driver = FakeDriver(name="typo", kinds=frozenset({"notebok"}))

    # when it registers, then it is refused with the known kinds named
    with pytest.raises(ValueError, match="notebok"):
        driver_register(driver)
    assert launchable_kinds() == frozenset()


def test_a_second_driver_cannot_take_a_registered_name(register_driver):
    from provisioning.drivers import driver_register

    # given a registered driver
    first = register_driver("notebook")

    # when another driver claims its name, then registration fails; the same object is a no-op
    with pytest.raises(ValueError, match="already registered"):
        driver_register(FakeDriver(name=first.name, kinds=frozenset({"ray"})))
    assert driver_register(first) is first
    assert launchable_kinds() == {"notebook"}


def test_driver_kinds_match_the_catalog_offering_kinds():
    # the driver package repeats the kinds because it must not import Django
    assert KNOWN_OFFERING_KINDS == set(OfferingKind.values)


def test_the_driver_package_does_not_import_django():
    # given a fresh interpreter
    code = (
        "import sys, provisioning.drivers; "
        "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    # when it imports the drivers, then Django is not loaded
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
