"""Catalog-only fixtures: a fake provisioning driver that is always unregistered afterwards."""

import pytest

from provisioning.drivers import Driver, driver_register, driver_unregister, drivers_registered


class FakeDriver(Driver):
    def __init__(self, name: str, kinds: frozenset[str], form_launchable: bool = True):
        self.name = name
        self.offering_kinds = kinds
        self.form_launchable = form_launchable

    def start(self, instance_id: int) -> None:
        pass

    def stop(self, instance_id: int) -> None:
        pass


@pytest.fixture
def register_driver():
    """Call with offering kinds to make them launchable for this test only."""
    names: list[str] = []

    def register(*kinds: str, form_launchable: bool = True) -> FakeDriver:
        driver = FakeDriver(name=f"fake-{len(names)}", kinds=frozenset(kinds), form_launchable=form_launchable)
        driver_register(driver)
        names.append(driver.name)
        return driver

    yield register
    for name in names:
        driver_unregister(name)


@pytest.fixture(autouse=True)
def empty_driver_registry():
    """Catalog tests start from a registry with no drivers (the portal registers the notebook
    driver at start-up) and get the portal's drivers back afterwards."""
    registered = drivers_registered()
    for driver in registered:
        driver_unregister(driver.name)
    yield
    for driver in registered:
        driver_register(driver)
