"""Which tone a state is shown in, for every resource's state badge: one table, so a running
instance, a ready node and a paid invoice all read as "good" in the same colour, and every state
that waits for something shows a spinner."""

from __future__ import annotations

from typing import Literal

Tone = Literal["ok", "wait", "warn", "err", "muted", "info"]

STATE_TONES: dict[str, Tone] = {
    # good
    "running": "ok", "ready": "ok", "paid": "ok", "active": "ok", "succeeded": "ok", "healthy": "ok",
    # waiting for something to happen: shown with a spinner
    "queued": "wait", "requested": "wait", "scheduled": "wait", "provisioning": "wait", "starting": "wait",
    "stopping": "wait", "pending": "wait", "draining": "wait", "processing": "wait",
    # needs a person's attention
    "open": "warn", "past_due": "warn", "cordoned": "warn", "degraded": "warn", "warning": "warn",
    # went wrong
    "failed": "err", "lost": "err", "down": "err", "payment_failed": "err", "error": "err",
    "uncollectible": "err", "short": "err",
    # over, or not in play
    "stopped": "muted", "terminated": "muted", "maintenance": "muted", "void": "muted", "draft": "muted",
    "expired": "muted", "revoked": "muted", "closed": "muted", "ended": "muted", "cancelled": "muted",
}


def state_tone(state: str) -> Tone:
    return STATE_TONES.get(str(state).lower(), "info")
