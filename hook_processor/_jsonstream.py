"""``json.dumps(document, indent=2, ensure_ascii=False)``, written piece by piece.

The manifest and result.json of a run of 100,000 files list 100,000 entries: ``dumps`` with an
indent first makes every piece (~15 per entry), then joins them, and the entries themselves
(a dict each) were held as a list. Here a top-level value may be a :class:`Lazy` list whose
entries are made one at a time as they are written; the text is the same as ``dumps``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any


class Lazy:
    """A list of ``count`` entries, made by ``entries()`` as they are written."""

    def __init__(self, count: int, entries: Callable[[], Iterable[Any]]) -> None:
        self.count = count
        self.entries = entries


def pieces(document: Mapping[str, Any]) -> Iterator[str]:
    """The text of ``document`` (string keys, as ``dumps`` writes them), in pieces."""
    if not document:
        yield "{}"
        return
    yield "{"
    for n, (key, value) in enumerate(document.items()):
        yield ",\n  " if n else "\n  "
        yield json.dumps(str(key), ensure_ascii=False)
        yield ": "
        if not isinstance(value, Lazy):
            yield _indented(value, "  ")
        elif not value.count:
            yield "[]"
        else:
            yield "["
            for i, entry in enumerate(value.entries()):
                yield ",\n    " if i else "\n    "
                yield _indented(entry, "    ")
            yield "\n  ]"
    yield "\n}"


def _indented(value: Any, indent: str) -> str:
    """``value`` as ``dumps(indent=2)`` writes it ``indent`` deep (JSON text has no raw line
    break but those of its indentation)."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)
