"""Fixtures shared by the capacity tests."""

import pytest

from tests.factories.catalog import GpuModelFactory, RegionFactory


@pytest.fixture
def region():
    return RegionFactory(code="us-east-1")


@pytest.fixture
def h100():
    return GpuModelFactory(name="NVIDIA H100 80GB")
