"""The one small interface every driver implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

# The catalog's OfferingKind values. Repeated here because this package must not import Django;
# tests/catalog keeps the two in lock-step, so a typo in a driver's kinds fails loudly.
KNOWN_OFFERING_KINDS: frozenset[str] = frozenset(
    {"bare_metal", "gpu_slice", "notebook", "ray", "kubeflow", "token_endpoint"}
)


class Driver(ABC):
    """Turns a launched instance into a running workload and back.

    `start` and `stop` take the instance id, not an object: they run in Celery workers, which
    re-read the instance, and must be idempotent because a task may be delivered twice.
    """

    name: ClassVar[str]
    offering_kinds: ClassVar[frozenset[str]]

    @abstractmethod
    def start(self, instance_id: int) -> None:
        """Make the instance's workload run (or find it already running)."""

    @abstractmethod
    def stop(self, instance_id: int) -> None:
        """Make the instance's workload stop (or find it already stopped)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kinds={sorted(self.offering_kinds)}>"
