"""Progress of a child's transfers, drawn by the parent: ``run --mode subprocess|container``.

In those modes the stage-in and the publication run in a child (``python -m hook_processor
exec``, or the container) whose stderr is a pipe read by ``hook-processor run``, so the child
can draw no bar. When ``run`` draws bars (its stderr a terminal, text logs) it sets the internal
setting ``HOOK_PROGRESS_EVENTS=relay`` in the child's environment; the child's runtime then
writes its progress as lines ``PREFIX + JSON`` (:class:`RelayDisplay`, from the first byte,
about ten a second), and the parent's log reader (:class:`ProgressReader`) turns them into
trackers of its own display and passes every other line through unchanged. A parent that draws
no bar (piped stderr, JSON logs) never asks: nothing changes for it.

The prefix starts with an ASCII record separator: the text log escapes control characters, so
no log line of the child can hold it. Imports only json and _progress (``exec`` path).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from hook_processor._progress import Display, ProgressFactory, Tracker

SETTING = "HOOK_PROGRESS_EVENTS"
RELAY = "relay"  # the only value: set by hook-processor run, not by users
PREFIX = "\x1ehook-progress "
INTERVAL = 0.1  # seconds between two events of one phase (the parent's bar redraws 10 a second)


def requested(env: Mapping[str, str]) -> str | None:
    """The value of ``HOOK_PROGRESS_EVENTS`` in ``env`` (any case of the name), None if unset."""
    return next((v for k, v in env.items() if k.upper() == SETTING and v), None)


def wanted(progress: ProgressFactory | None, env: Mapping[str, str]) -> bool:
    """Whether a mode should ask its child to relay: the parent shows progress itself (a
    factory) and the child logs text (with JSON logs the child's own events pass through)."""
    log_format = next((v for k, v in env.items() if k.upper() == "HOOK_LOG_FORMAT"), "text")
    return progress is not None and log_format.strip().lower() != "json"


class RelayDisplay(Display):
    """The child's side: every phase's counts as ``PREFIX + JSON`` lines on ``stream``."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, 0.0, clock)  # the parent applies its own threshold

    def factory(self, phase: str) -> Tracker:
        self.min_seconds = 0.0  # whatever the runtime set: the parent decides what is shown
        return super().factory(phase)

    def _view(self) -> _RelayView:
        return _RelayView(self)

    def emit(self, tracker: Tracker, final: bool) -> None:
        entry = {
            "phase": tracker.phase,
            "files_done": tracker.files_done,
            "files_total": tracker.files_total,
            "bytes_done": tracker.bytes_done,
            "bytes_total": tracker.bytes_total,
            "final": final,
        }
        line = PREFIX + json.dumps(entry) + "\n"
        with self.lock:  # one whole line per write, whichever thread reports
            self.stream.write(line)
            self.stream.flush()


class _RelayView:
    def __init__(self, display: RelayDisplay) -> None:
        self.display = display
        self.last: float | None = None
        self.totals: tuple[int | None, int | None] | None = None

    def show(self, tracker: Tracker) -> None:
        now = tracker.elapsed
        totals = (tracker.files_total, tracker.bytes_total)
        if self.last is not None and now - self.last < INTERVAL and totals == self.totals:
            return
        self.last, self.totals = now, totals
        self.display.emit(tracker, final=False)

    def close(self, tracker: Tracker) -> None:
        self.display.emit(tracker, final=True)


class ProgressReader:
    """The parent's side: ``feed`` the child's output in chunks of any size; it returns the
    text to show and keep (every line but the relayed events), and drives trackers made by
    ``progress`` for the events. Call :meth:`finish` at the end of the output."""

    def __init__(self, progress: ProgressFactory) -> None:
        self._progress = progress
        self._pending = ""  # an event cut by the chunk, or a tail that may begin one
        self._phase: str | None = None
        self._tracker: Tracker | None = None
        self._files = self._bytes = 0
        self._totals: tuple[Any, Any] | None = None

    def feed(self, text: str) -> str:
        shown: list[str] = []
        text, self._pending = self._pending + text, ""
        while text:
            # Anywhere, not only at a line's start: the child's stdout (an author's print()
            # without its newline yet) shares the pipe with these lines.
            start = text.find(PREFIX)
            if start < 0:  # shown at once, but for a tail that may be the start of an event
                keep = _prefix_tail(text)
                shown.append(text[: len(text) - keep])
                self._pending = text[len(text) - keep :]
                break
            shown.append(text[:start])
            end = text.find("\n", start)
            if end < 0:  # an event cut by the chunk: wait for the rest
                self._pending = text[start:]
                break
            line, text = text[start : end + 1], text[end + 1 :]
            if not self._event(line[len(PREFIX) :]):
                shown.append(line)  # not one of ours after all: shown as it came
        return "".join(shown)

    def finish(self) -> str:
        """The end of the output: a cut event is dropped, a phase left open is ended."""
        rest, self._pending = self._pending, ""
        self._end_phase()
        return "" if rest.startswith(PREFIX) else rest

    def _event(self, raw: str) -> bool:
        try:
            event = json.loads(raw)
            phase = str(event["phase"])
            files_done, bytes_done = int(event["files_done"]), int(event["bytes_done"])
            totals = (event["files_total"], event["bytes_total"])
            final = bool(event["final"])
        except (ValueError, KeyError, TypeError):
            return False
        if phase != self._phase:
            self._end_phase()
            self._phase, self._tracker = phase, self._progress(phase)
            self._files = self._bytes = 0
            self._totals = None
        tracker = self._tracker
        if tracker is not None:
            if totals != self._totals and isinstance(totals[0], int):
                self._totals = totals
                tracker.start(totals[0], totals[1] if isinstance(totals[1], int) else None)
            # Bytes before files: the last file done ends the tracker, drawn with these bytes.
            if bytes_done != self._bytes:
                tracker(bytes_done - self._bytes)
            for _ in range(files_done - self._files):
                tracker.file_done()
        self._files, self._bytes = max(self._files, files_done), bytes_done
        if final:
            self._end_phase()
        return True

    def _end_phase(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
        self._phase, self._tracker = None, None


def _prefix_tail(text: str) -> int:
    """The length of the end of ``text`` that begins :data:`PREFIX` (0: none)."""
    at = text.rfind(PREFIX[0], max(0, len(text) - len(PREFIX) + 1))
    return len(text) - at if at >= 0 and PREFIX.startswith(text[at:]) else 0
