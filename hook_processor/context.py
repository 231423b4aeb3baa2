"""What a processor may know about its run: the order, a logger, and its STAC catalog."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hook_processor.stac import OutputCatalog

if TYPE_CHECKING:
    import pystac


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
    stac: OutputCatalog = dataclasses.field(default_factory=OutputCatalog)
    """The items of the STAC catalog written after ``process``: ``context.stac.add_item(...)``
    (see :mod:`hook_processor.stac`)."""
    input_dir: Path | None = None

    @functools.cached_property
    def input_catalog(self) -> pystac.Catalog | None:
        """The staged input's ``catalog.json`` as a pystac catalog (the EO Application Package
        stage-in convention), or None when the input has none. Read on first use."""
        if self.input_dir is None:
            return None
        from hook_processor import _catalog

        catalog: pystac.Catalog | None = _catalog.read_input(self.input_dir)
        return catalog
