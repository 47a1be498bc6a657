"""The long-poll thread: keeps `GET /api/v1/agent/workloads` open so changes arrive at once.

It is the only channel the desired state comes on, and what makes click-to-ready fast: the
portal answers the moment the node's desired state changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..client import (
    CredentialRejected,
    PortalClient,
    PortalRejected,
    PortalUnavailable,
    RetryPolicy,
)
from .spec import DesiredState

log = logging.getLogger("neocloud.agent")

DEFAULT_WAIT_S = 25.0
_NO_ENDPOINT_PAUSE_S = 60.0  # a portal without the long-poll (an older one, mid-upgrade)
_BACKOFF = RetryPolicy(base_s=1.0, cap_s=30.0)


def watch_run(client: PortalClient, desired: DesiredState, apply: Callable[[list], None],
              stop: threading.Event, on_fatal: Callable[[Exception], None],
              wait_s: float = DEFAULT_WAIT_S) -> None:
    """Long-poll until `stop`; hands every changed snapshot to `apply` (which must not block)."""
    failures = 0
    while not stop.is_set():
        try:
            answer = client.workloads_poll(desired.version, wait_s)
        except CredentialRejected as exc:
            on_fatal(exc)
            return
        except PortalRejected as exc:
            if exc.status == 404:
                log.warning("the portal has no workloads long-poll (HTTP 404); no desired "
                            "workloads until it has one")
                stop.wait(_NO_ENDPOINT_PAUSE_S)
                continue
            failures += 1
            log.error("workloads long-poll: %s", exc)
        except PortalUnavailable as exc:
            failures += 1
            log.warning("workloads long-poll: %s", exc)
        except Exception:  # never let a bug end the only fast channel silently
            failures += 1
            log.exception("workloads long-poll failed")
        else:
            failures = 0
            changed = desired.from_poll(answer.version, answer.workloads)
            if changed is not None:
                log.info("desired workloads (version %d): %d", answer.version, len(changed))
                apply(changed)
            continue
        # A floor under the jitter: a portal refusing connections must not make us spin.
        stop.wait(0.5 + _BACKOFF.delay_s(min(failures - 1, 10)))


def watch_start(*args, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=watch_run, args=args, kwargs=kwargs,
                              name="workloads-watch", daemon=True)
    thread.start()
    return thread
