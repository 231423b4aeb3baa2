"""tracemalloc for the memory bounds of tests/test_stage_in_memory.py and test_publish_memory.py
(the ``traced`` fixture, which turns it on, is conftest.py's)."""

from __future__ import annotations

import gc
import tracemalloc


def traced_bytes() -> int:
    """The bytes Python holds now, after a collection (tracemalloc must be tracing)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]
