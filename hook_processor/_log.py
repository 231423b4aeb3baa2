"""Logging of a run: one line per event on stderr, for people or as JSON lines; secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import IO

LOGGER_NAME = "hook_processor"
PROCESSOR_LOGGER_NAME = "hook_processor.process"
REDACTED = "**********"


class _Redactor(logging.Filter):
    """Replace every known secret value in a record's message (defence in depth)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            clean = redact(message, self.secrets)
            if record.exc_text:
                record.exc_text = redact(record.exc_text, self.secrets)
            record.msg, record.args = clean, None
        return True


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


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


class RunLogging:
    """The log handler of one run and its redactor."""

    def __init__(self, handler: logging.Handler, redactor: _Redactor) -> None:
        self.handler, self.redactor = handler, redactor

    def add_secrets(self, secrets: Iterable[str]) -> None:
        merged = set(self.redactor.secrets) | {s for s in secrets if len(s) >= 4}
        self.redactor.secrets = sorted(merged, key=len, reverse=True)

    def redact(self, text: str) -> str:
        return redact(text, self.redactor.secrets)

    def close(self) -> None:
        logging.getLogger(LOGGER_NAME).removeHandler(self.handler)
        self.handler.close()


def configure(
    fmt: str = "text",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> RunLogging:
    """Attach one stderr handler to hook-processor's logger for the length of a run."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    redactor = _Redactor(secrets)
    handler.addFilter(redactor)
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return RunLogging(handler, redactor)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
