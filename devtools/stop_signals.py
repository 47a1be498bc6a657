"""How the run command learns it must stop: SIGINT, SIGTERM or SIGHUP to itself, or to the
`make` that started it.

GNU make forwards SIGTERM to its recipe, but not SIGINT, SIGHUP or SIGQUIT: it expects the
terminal to have signalled the whole foreground process group (as Ctrl-C does), and waits inside
its signal handler, with that signal blocked, for the recipe to end. So a `kill -INT <make>` alone
would leave make waiting for the launcher and the launcher running forever. While make is the
launcher's parent, a watcher thread reads make's blocked-signal mask in /proc: make blocked in its
handler for one of those signals, or gone, counts as that signal sent to the launcher.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The signals make does not forward to its recipe (see above); SIGQUIT too, though we do not catch it.
_MAKE_WAITS_ON = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class Interrupted(BaseException):
    """Raised in the main thread by a stop signal; a BaseException so no `except Exception` eats it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Turns stop signals into `Interrupted` in the main thread.

    Inside `shielded()` (starting a server whose handle is not recorded yet, so that an interrupt
    cannot leave it running unknown) the signal waits for the block's end; after `stopping()` it
    is ignored: the launcher is already on its way out, and a second Ctrl-C must not cut cleanup.
    """

    def __init__(self) -> None:
        self._state = "running"
        self._pending: int | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        make = _make_parent()
        if make:
            threading.Thread(target=_watch_make, args=(make,), name="make-watcher", daemon=True).start()

    def _on_signal(self, signum, frame) -> None:
        if self._state == "running":
            raise Interrupted(signum)
        if self._state == "shielded":
            self._pending = signum

    @contextmanager
    def shielded(self):
        self._state = "shielded"
        try:
            yield
        finally:
            if self._state == "shielded":
                self._state = "running"
            if self._pending is not None:
                signum, self._pending = self._pending, None
                raise Interrupted(signum)

    def stopping(self) -> None:
        self._state = "stopping"


def _make_parent() -> int | None:
    parent = os.getppid()
    try:
        name = Path(f"/proc/{parent}/comm").read_text().strip()
    except OSError:
        return None
    return parent if name in ("make", "gmake") else None


def make_waits_on_signal(pid: int) -> int | None:
    """The signal `pid` (a make) is handling while it waits for its recipe, if any."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    blocked = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigBlk:")), 0)
    return next((signum for signum in _MAKE_WAITS_ON if blocked & (1 << (signum - 1))), None)


def _watch_make(make: int, every_s: float = 0.3) -> None:
    stop = threading.Event()
    while not stop.wait(every_s):
        if os.getppid() != make:  # make is gone (killed outright): nobody waits for us any more
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signum = make_waits_on_signal(make)
        if signum:
            # SIGINT for SIGQUIT too: the launcher catches the signals it stops on, and nothing else.
            os.kill(os.getpid(), signum if signum in STOP_SIGNALS else signal.SIGINT)
            return
