"""Logging of a run: one line per event on stderr, for people or as JSON lines; secrets redacted.

For the length of a run the handler sits on the root logger, so the author's own loggers
(``logging.getLogger(__name__)`` in process()) reach the run log too, formatted and redacted like
ours; libraries' chatter is held at WARNING. :meth:`RunLogging.close` puts back exactly the
logging state it found, because the harness and the pytest plugin run many runs in one process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import IO

LOGGER_NAME = "hook_processor"
PROCESSOR_LOGGER_NAME = "hook_processor.process"
REDACTED = "**********"
DETAILS = "hook_details"
"""Attribute of a record (``extra={DETAILS: text}``) with lines to show after its message as
they are: the author's traceback."""
# Their INFO/DEBUG lines are per request (botocore, urllib3, s3transfer) or per HTTP hit of the
# embedded S3 server of in-process runs (werkzeug, moto): noise in a run log, so WARNING and up.
NOISY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "werkzeug", "moto")


class _Redactor(logging.Filter):
    """Replace every known secret value in a record's message (defence in depth).

    It also applies the run's level, after redacting: a record of a logger set below that level
    is not shown, but is redacted all the same for the handlers after ours (pytest's capture).
    """

    def __init__(self, secrets: Iterable[str], level: int = logging.NOTSET) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            clean = redact(message, self.secrets)
            if record.exc_text:
                record.exc_text = redact(record.exc_text, self.secrets)
            details = getattr(record, DETAILS, None)
            if details:
                setattr(record, DETAILS, redact(details, self.secrets))
            record.msg, record.args = clean, None
        return record.levelno >= self.level


def human_size(n: float) -> str:
    """Bytes for people, in decimal units: ``85 B``, ``1.2 MB``; negative sizes keep their sign."""
    sign, value = ("-" if n < 0 else ""), abs(float(n))
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


# Control characters (C0 but tab, DEL, C1) and the Unicode line separators: written raw, a
# newline in a key name starts a line that looks like a record of ours, \r and ESC rewrite
# what a terminal shows. So in the text log every line is a record (a timestamp at column 0) or
# an indented continuation: a newline is kept only before indentation (the "  - " lines of our
# error listings), tracebacks are indented, everything else is escaped.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]|\n(?![ \t])")
_CONTROL_KEEP_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}
_INDENT = "  "


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape_controls(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``): tab, and a
    newline that an indented line follows, are kept."""
    return _CONTROL.sub(_escape_char, text)


def _indented_block(text: str) -> str:
    """A traceback as lines of their own, indented so that none can pass for a record."""
    lines = _CONTROL_KEEP_NEWLINE.sub(_escape_char, text.rstrip("\n")).split("\n")
    return "\n".join(_INDENT + line for line in lines)


def _ours(name: str) -> bool:
    return name == LOGGER_NAME or name.startswith(LOGGER_NAME + ".")


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        if not _ours(record.name):  # someone else's logger: say whose line it is
            record.message = f"{record.name}: {record.message}"
        # Whatever names the message carries, no line of it can pass for a record (_CONTROL).
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        """The escaped message, then the traceback (the author's, or exc_info's), indented."""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        details = [getattr(record, DETAILS, None), record.exc_text]
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for block in details:
            if block:
                text += "\n" + _indented_block(block)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, DETAILS, None):
            entry["message"] += "\n" + getattr(record, DETAILS)
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        # json escapes C0 controls itself; C1 and U+2028/9 too, so no reader splits a record.
        return _JSON_UNSAFE.sub(_escape_json, json.dumps(entry, ensure_ascii=False))


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escape_json(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class RunLogging:
    """The log handler of one run, its redactor, and the logging state to put back."""

    def __init__(self, handler: logging.Handler, redactor: _Redactor, saved: _State) -> None:
        self.handler, self.redactor, self._saved = handler, redactor, saved

    def add_secrets(self, secrets: Iterable[str]) -> None:
        merged = set(self.redactor.secrets) | {s for s in secrets if len(s) >= 4}
        self.redactor.secrets = sorted(merged, key=len, reverse=True)

    def redact(self, text: str) -> str:
        return redact(text, self.redactor.secrets)

    def close(self) -> None:
        """Detach the handler and restore every level, handler list and flag that was changed.

        Handlers added to the root logger during the run (an author's ``basicConfig()``) are
        detached too: nothing of one run's logging outlives it.
        """
        self._saved.restore()
        self.handler.close()


class _State:
    """Levels, handlers and ``propagate`` of the loggers a run reconfigures."""

    def __init__(self, names: Iterable[str]) -> None:
        self.loggers = [logging.getLogger(name or None) for name in names]
        self.saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in self.loggers]

    def restore(self) -> None:
        for logger, level, handlers, propagate in self.saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate


def configure(
    fmt: str = "text",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> RunLogging:
    """Send every logger's records to one stderr handler (or ``stream``) for the length of a run.

    The handler goes first on the root logger: it redacts a record in place before any handler
    already there (pytest's log capture, in-process runs) sees it.
    """
    saved = _State(("", LOGGER_NAME, *NOISY_LOGGERS))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    redactor = _Redactor(secrets, logging.getLevelName(level))
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers.insert(0, handler)
    root.setLevel(level)
    ours = logging.getLogger(LOGGER_NAME)
    ours.setLevel(level)
    ours.propagate = True
    quiet = max(logging.WARNING, redactor.level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return RunLogging(handler, redactor, saved)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
