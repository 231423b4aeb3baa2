"""The ``plan`` step of the WorkflowTemplate that ``hook-processor export argo`` writes (ours).

It runs once per workflow, before any item, in the processor's own image (``python3``), and turns
the ``identifiers`` parameter (a JSON list of strings) into the list the items fan out over
(``withParam``): for each identifier its position (1, 2, ...), the identifier, the runtime's
``HOOK_IDENTIFIERS`` (a JSON list of that one identifier: Argo substitutes text, it cannot build
JSON) and the item's PRIVATE output location. As in ``hook-processor serve``, an order with
several identifiers and PRIVATE output publishes each item under ``<prefix>/<position>`` (the
``output_s3_path`` and/or ``s3_prefix`` given, plus the position); one identifier publishes under
the prefix itself. A bad ``identifiers`` value fails this step with one line and exit 2 (Argo's
retry strategy never retries 2), and no item runs.

Standard library only, and no double braces anywhere in this file: Argo substitutes its
template tags in a script's source. The values arrive as environment variables, never pasted into
the source, so no identifier can change what runs.
"""

from __future__ import annotations

import json
import os
import sys


def plan(
    identifiers: str, output_storage: str = "", output_s3_path: str = "", s3_prefix: str = ""
) -> list[dict[str, str]]:
    """The items of one workflow; ValueError says what is wrong with ``identifiers``."""
    try:
        given = json.loads(identifiers)
    except ValueError:
        raise ValueError(
            'must be a JSON list of product identifiers, e.g. ["Custom Hook"]; got text that is '
            "not JSON"
        ) from None
    if not isinstance(given, list) or not given:
        raise ValueError('must be a non-empty JSON list of identifiers, e.g. ["Custom Hook"]')
    if not all(isinstance(i, str) and i for i in given):
        raise ValueError("every identifier must be a non-empty string")
    several = len(given) > 1
    private = (output_storage.strip().upper() or "PRIVATE") == "PRIVATE"
    items = []
    for position, identifier in enumerate(given, start=1):
        path, prefix = output_s3_path, s3_prefix
        if several and private:
            if path:
                path = f"{path.rstrip('/')}/{position}"
            if prefix or not path:
                prefix = f"{prefix.rstrip('/')}/{position}" if prefix else str(position)
        items.append(
            {
                "position": str(position),
                "identifier": identifier,
                "identifiers": json.dumps([identifier], ensure_ascii=False),
                "output_s3_path": path,
                "s3_prefix": prefix,
            }
        )
    return items


def main() -> int:
    env = os.environ
    try:
        items = plan(
            env.get("IDENTIFIERS", ""),
            env.get("OUTPUT_STORAGE", ""),
            env.get("OUTPUT_S3_PATH", ""),
            env.get("S3_PREFIX", ""),
        )
    except ValueError as exc:
        print(f"the identifiers parameter {exc}", file=sys.stderr)
        return 2
    print(json.dumps(items, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
