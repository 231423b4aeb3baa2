"""The built-in ``odp-test`` workflow's processor: it sleeps, then writes a small output.

The live service lists an ``odp-test`` workflow (hook-contract.md §3.1) but its options were never
published; ours are ``sleep_time`` (integer seconds, as the seed notebook sends it) and the
standard output options. An odp-test item is a real run of the runtime (``hook-processor exec``
in a child process, see :mod:`hook_processor.service.executor`): its input is a small JSON file
the service writes (the runtime needs an input), and its output is ``odp-test.json``, published
like any processor's (TEMPORARY unless the order asks for PRIVATE). It lives in the service
package but imports only the runtime's own modules: it runs on ``exec``'s start-up path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import Field

from hook_processor.context import Context
from hook_processor.options import Options

ENTRYPOINT = "hook_processor.service._odp_test:process"
OUTPUT_NAME = "odp-test.json"


class OdpTestOptions(Options):
    """ours: the options of the built-in odp-test workflow."""

    sleep_time: int = Field(
        10, ge=0, le=86400, description="Seconds the item sleeps before it writes its output"
    )


def process(input_dir: Path, output_dir: Path, options: OdpTestOptions, context: Context) -> None:
    """Sleep ``sleep_time`` seconds (a SIGTERM ends the sleep at once: exit 6), then write
    ``odp-test.json`` naming what was slept and for which identifier."""
    began = time.monotonic()
    time.sleep(options.sleep_time)
    staged = sorted(
        p.relative_to(input_dir).as_posix() for p in input_dir.rglob("*") if p.is_file()
    )
    (output_dir / OUTPUT_NAME).write_text(
        json.dumps(
            {
                "workflow": "odp-test",
                "sleep_time": options.sleep_time,
                "slept_seconds": round(time.monotonic() - began, 3),
                "identifiers": list(context.identifiers),
                "order_id": context.order_id,
                "input_files": staged,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
