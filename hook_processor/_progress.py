"""Progress of long transfers: a bar on a terminal, periodic events in JSON logs, else nothing.

A transfer (a *phase*: ``upload_input``, ``stage_in``, ``publish``, ``download_output``) reports
to a :class:`Tracker` through the :class:`Progress` protocol: its totals once they are known
(from the listing or the walk), bytes as they move (negative when a retried request rewinds
what it had sent), and each file done. What the trackers show depends on where the log goes
(:func:`display_for`):

* a terminal, text logs: one tqdm bar per phase once the phase has lasted
  ``HOOK_PROGRESS_MIN_SECONDS`` (default 1 s): percentage, bytes and files done of the total,
  time left and rate; log lines written meanwhile go above the bar;
* JSON logs (``HOOK_LOG_FORMAT=json``): one JSON line ``{"event": "progress", ...}`` once the
  phase has lasted that long, then at most one every :data:`EVENT_INTERVAL` seconds, and a last
  one when it ends;
* anything else (a pipe, a file): nothing; the log's own lines say what was moved.

A tracker ends by itself when its last file is done; one that stops short (a failed transfer)
ends when the display makes the next phase's tracker or is closed.

tqdm is imported only when a bar is actually shown: ``hook-processor exec`` stays light.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

MIN_SECONDS_SETTING = "HOOK_PROGRESS_MIN_SECONDS"
DEFAULT_MIN_SECONDS = 1.0  # a transfer shorter than this shows nothing
EVENT_INTERVAL = 5.0  # seconds between two JSON progress events of one phase
LOGGER_NAME = "hook_processor.progress"  # the "logger" field of the JSON events

LABELS = {
    "upload_input": "upload inputs",
    "stage_in": "stage-in",
    "publish": "publish",
    "download_output": "download outputs",
}
_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B{postfix} [{elapsed}<{remaining}, "
    "{rate_fmt}]"
)


class Progress(Protocol):
    """What a transfer reports as it goes (calls may come from several threads at once)."""

    def start(self, files: int, nbytes: int | None) -> None:
        """The totals, once known (``nbytes`` None: not known in advance)."""

    def __call__(self, nbytes: int) -> None:
        """``nbytes`` moved; negative when a retry rewinds what had been counted."""

    def file_done(self) -> None:
        """One more file is complete."""


class _View(Protocol):
    def show(self, tracker: Tracker) -> None: ...

    def close(self, tracker: Tracker) -> None: ...


class Tracker:
    """The counts of one phase; shown by its view once the phase has lasted ``min_seconds``."""

    def __init__(
        self,
        phase: str,
        view: _View | None = None,
        min_seconds: float = DEFAULT_MIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.phase = phase
        self.files_total: int | None = None
        self.bytes_total: int | None = None
        self.files_done = 0
        self.bytes_done = 0
        self.shown = False
        self._view = view
        self._min_seconds = min_seconds
        self._clock = clock
        self._began = clock()
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return LABELS.get(self.phase, self.phase)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._began

    @property
    def rate(self) -> float:
        """Bytes per second since the phase began."""
        return self.bytes_done / max(self.elapsed, 1e-6)

    @property
    def seconds_left(self) -> float | None:
        if self.bytes_total is None or self.bytes_done <= 0:
            return None
        return max(0, self.bytes_total - self.bytes_done) / max(self.rate, 1e-9)

    def start(self, files: int, nbytes: int | None) -> None:
        with self._lock:
            self.files_total, self.bytes_total = files, nbytes
            self._changed()

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes
            self._changed()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._changed()

    def close(self) -> None:
        """The phase ended (done or not): a bar is drawn one last time, a last event is sent."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._view is not None and self.shown:
            self._view.close(self)
        self._view = None

    def _changed(self) -> None:
        if self._view is None:
            return
        complete = self.files_total is not None and self.files_done >= self.files_total
        if self.shown or self.elapsed >= self._min_seconds:
            self.shown = True
            self._view.show(self)
        if complete:
            self._close()

    def files_text(self) -> str:
        if self.files_total is None:
            return f"{self.files_done} files"
        return f"{self.files_done}/{self.files_total} files"


ProgressFactory = Callable[[str], Tracker | None]


class Display:
    """Where the trackers of one command show themselves; ``factory`` makes one per phase."""

    def __init__(
        self,
        stream: IO[str],
        min_seconds: float = DEFAULT_MIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.min_seconds = min_seconds
        self.clock = clock
        self.lock = threading.Lock()
        self._current: Tracker | None = None

    def factory(self, phase: str) -> Tracker:
        """A tracker for ``phase``; the previous phase's, if it stopped short, ends here."""
        self.close()
        self._current = Tracker(phase, self._view(), self.min_seconds, self.clock)
        return self._current

    def close(self) -> None:
        """End the current tracker (a no-op if it ended by itself)."""
        current, self._current = self._current, None
        if current is not None:
            current.close()

    def _view(self) -> _View:
        raise NotImplementedError

    def wrap(self, stream: IO[str]) -> IO[str]:
        """The stream that log lines should be written to while trackers may be shown."""
        return stream


class TerminalDisplay(Display):
    """One tqdm bar per phase; log lines written through :meth:`wrap` go above the bar."""

    def __init__(
        self,
        stream: IO[str],
        min_seconds: float = DEFAULT_MIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream, min_seconds, clock)
        self._bar_class: Any = None

    def _view(self) -> _View:
        return _BarView(self)

    def bar_class(self) -> Any:
        """tqdm's bar, imported on the first bar actually shown."""
        with self.lock:
            if self._bar_class is None:
                from tqdm import tqdm

                class _Bar(tqdm):
                    monitor_interval = 0  # no monitor thread: our updates are frequent enough

                # A thread lock: tqdm's default one also creates a multiprocessing lock.
                _Bar.set_lock(threading.RLock())
                self._bar_class = _Bar
            return self._bar_class

    def write(self, text: str) -> int:
        bar = self._bar_class
        if bar is None:  # no bar was ever shown
            return self.stream.write(text)
        with bar.external_write_mode(file=self.stream):  # clear the bars, write, redraw
            return self.stream.write(text)

    def wrap(self, stream: IO[str]) -> IO[str]:
        return _WrappedStream(self, stream)  # type: ignore[return-value]


class _WrappedStream:
    """A text stream whose writes go through a terminal display (above its bars)."""

    def __init__(self, display: TerminalDisplay, stream: IO[str]) -> None:
        self._display, self._stream = display, stream

    def write(self, text: str) -> int:
        return self._display.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _width(stream: Any) -> dict[str, Any]:
    """tqdm's width: the terminal's as it changes, or 80 columns where the terminal says 0
    (``script`` with no window, some CI pseudo-terminals), where tqdm would draw empty lines."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 80}


class _BarView:
    def __init__(self, display: TerminalDisplay) -> None:
        self.display = display
        self.bar: Any = None
        self.files = ""

    def show(self, tracker: Tracker) -> None:
        files = tracker.files_text()
        if self.bar is None:
            self.bar = self.display.bar_class()(
                total=tracker.bytes_total,
                initial=tracker.bytes_done,
                desc=tracker.label,
                unit="B",
                unit_scale=True,
                file=self.display.stream,
                leave=True,
                **_width(self.display.stream),
                bar_format=_BAR_FORMAT,
                postfix=files,
            )
            self.files = files
            return
        if self.bar.total != tracker.bytes_total:
            self.bar.total = tracker.bytes_total
        if files != self.files:
            self.files = files
            self.bar.set_postfix_str(files, refresh=False)
        self.bar.update(tracker.bytes_done - self.bar.n)  # tqdm limits the redraws to 10 a second

    def close(self, tracker: Tracker) -> None:
        self.show(tracker)
        self.bar.close()


class EventDisplay(Display):
    """Progress events as JSON lines beside the JSON log lines (same fields as theirs)."""

    def _view(self) -> _View:
        return _EventView(self)

    def emit(self, tracker: Tracker, final: bool) -> None:
        left = tracker.seconds_left
        total = tracker.bytes_total
        share = f" ({100 * tracker.bytes_done / total:.0f}%)" if total else ""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "INFO",
            "logger": LOGGER_NAME,
            "message": (
                f"{tracker.label}: {tracker.files_text()}, {_size(tracker.bytes_done)} of "
                f"{_size(total) if total is not None else '?'}{share}, "
                f"{_size(tracker.rate)}/s" + (f", {left:.0f} s left" if left and not final else "")
            ),
            "event": "progress",
            "phase": tracker.phase,
            "files_done": tracker.files_done,
            "files_total": tracker.files_total,
            "bytes_done": tracker.bytes_done,
            "bytes_total": total,
            "rate": round(tracker.rate, 1),
            "seconds_left": None if left is None else round(left, 1),
            "elapsed": round(tracker.elapsed, 3),
            "final": final,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.lock:  # one whole line per write, whichever thread reports
            self.stream.write(line)
            self.stream.flush()


class _EventView:
    def __init__(self, display: EventDisplay) -> None:
        self.display = display
        self.last: float | None = None

    def show(self, tracker: Tracker) -> None:
        now = tracker.elapsed
        if self.last is not None and now - self.last < EVENT_INTERVAL:
            return
        self.last = now
        self.display.emit(tracker, final=False)

    def close(self, tracker: Tracker) -> None:
        self.display.emit(tracker, final=True)


def _size(n: float) -> str:
    from hook_processor._log import human_size

    return human_size(n)


def display_for(
    stream: IO[str], log_format: str, seconds: float = DEFAULT_MIN_SECONDS
) -> Display | None:
    """Bars for a terminal, events for JSON logs, None (nothing shown) for anything else."""
    if log_format.strip().lower() == "json":
        return EventDisplay(stream, seconds)
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return TerminalDisplay(stream, seconds) if terminal else None


def display_from_settings(stream: IO[str], env: Mapping[str, str]) -> Display | None:
    """:func:`display_for` with ``HOOK_LOG_FORMAT`` and ``HOOK_PROGRESS_MIN_SECONDS`` of ``env``.

    For the harness's own transfers (``hook-processor run``); the runtime takes the validated
    platform settings.
    """
    values = {key.upper(): value for key, value in env.items()}
    seconds = DEFAULT_MIN_SECONDS
    with contextlib.suppress(ValueError):
        seconds = max(0.0, float(values.get(MIN_SECONDS_SETTING, seconds)))
    return display_for(stream, values.get("HOOK_LOG_FORMAT", "text"), seconds)
