"""What a processor may know about its run: the order and a logger."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Context:
    """Passed to ``process`` when it has a ``context`` parameter."""

    identifiers: tuple[str, ...]
    """The order's IdentifierList (``("Custom Hook",)`` for the seed's custom hook)."""
    order_id: str | None
    order_name: str | None
    workflow_name: str | None
    priority: int | None
    work_dir: Path
    logger: logging.Logger
