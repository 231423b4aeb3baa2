"""SIGINT and SIGTERM during a local run: a cancellation (exit 6) that names the real signal.

``hook-processor run`` asks for it (``RunRequest.handle_signals``); library callers such as the
pytest plugin keep Python's default, where Ctrl-C raises KeyboardInterrupt. With it:

- while a mode runs the processor, a mode registers a *forward* (:meth:`Interrupt.forwarding`):
  the signal goes to the child process or the container as itself, and the runtime there stops
  (exit 6) as on the platform; in-process, the runtime's own handler runs;
- anywhere else (the checks, the uploads, the downloads), the first signal raises
  KeyboardInterrupt in the main thread, so that every ``finally`` cleans up: the uploads stop and
  abort their multipart uploads, a check's child is killed, the embedded server stops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

Forward = Callable[[int, int], None]  # (signal number, how many signals so far)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """The signals one run received; ``event`` is set at the first."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.count = 0
        self._forward: Forward | None = None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def handle(self, signum: int, _frame: object = None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        self.event.set()
        if self._forward is not None:
            self._forward(signum, self.count)
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def forwarding(self, forward: Forward) -> Iterator[None]:
        """While the block runs, signals go to ``forward`` instead of raising."""
        previous, self._forward = self._forward, forward
        try:
            yield
        finally:
            self._forward = previous


@contextlib.contextmanager
def handling(enabled: bool) -> Iterator[Interrupt | None]:
    """Handle SIGINT/SIGTERM for the block (main thread only); the old handlers come back."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield None
        return
    interrupt = Interrupt()
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, interrupt.handle)
    try:
        yield interrupt
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
