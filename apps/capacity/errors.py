"""Why the allocator said no, in a form views and the API can show as it is.

An `AllocationRefused` is an expected answer, not a fault: the web page shows `message`, the API
answers 409 with `as_dict()`. Its transaction has been rolled back, so nothing was allocated.
"""

from __future__ import annotations

from django.db import models


class RefusalReason(models.TextChoices):
    NO_CAPACITY = "no_capacity", "No capacity"
    QUOTA_EXCEEDED = "quota_exceeded", "Quota exceeded"
    RESERVED_FOR_GUARANTEES = "reserved_for_guarantees", "Reserved for guaranteed capacity"
    FLAVOR_NOT_ALLOCATABLE = "flavor_not_allocatable", "Flavor has no GPU capacity to allocate"
    RESERVED_FOR_RESERVATIONS = "reserved_for_reservations", "Promised to reservations starting soon"


class AllocationRefused(Exception):
    """GPU capacity could not be allocated; `reason` is a RefusalReason value, `message` is for people."""

    status_code = 409

    def __init__(self, reason: str, message: str):
        if reason not in RefusalReason.values:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = RefusalReason(reason)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"reason": str(self.reason), "detail": self.message}

    def __repr__(self) -> str:
        return f"AllocationRefused({str(self.reason)!r}, {self.message!r})"
