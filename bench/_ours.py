"""hook-processor's transfers as one process, for the bench: the runtime's code and defaults.

    python -m bench._ours download|upload --endpoint-url URL --bucket B --prefix P --dir DIR

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (set by the bench). Prints one JSON
line: the transfer's own seconds (inside the process, after imports and client creation), stats and
the S3 engine that ran (``HOOK_S3_ENGINE``, as exec reads it; default the runtime's).
Exit 3 when the storage module is still a stub.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="bench._ours")
    parser.add_argument("direction", choices=("download", "upload"))
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args()

    from pydantic import SecretStr

    from hook_processor import storage

    # The runtime's defaults, but the engine: HOOK_S3_ENGINE as exec reads it (the bench passes
    # only that HOOK_* variable through).
    settings = storage.TransferSettings(
        engine=os.environ.get("HOOK_S3_ENGINE") or storage.TransferSettings().engine,
        max_ranges=int(os.environ.get("HOOK_DOWNLOAD_RANGES") or 0),  # moto's runs (runner.py)
    )
    target = storage.S3Target(
        endpoint_url=args.endpoint_url,
        access_key=SecretStr(os.environ["AWS_ACCESS_KEY_ID"]),
        secret_key=SecretStr(os.environ["AWS_SECRET_ACCESS_KEY"]),
        region=os.environ.get("AWS_REGION", "us-east-1"),
    )
    try:
        client = storage.make_client(target, settings)
        ready = time.perf_counter()
        if args.direction == "download":
            args.dir.mkdir(parents=True, exist_ok=True)
            stats = storage.stage_in(
                client, args.bucket, args.prefix.rstrip("/") + "/", args.dir, settings
            )
            manifest = None
        else:
            outcome = storage.publish_private(
                client, args.bucket, args.prefix, args.dir, settings, manifest_extra={}
            )
            stats, manifest = outcome.stats, outcome.manifest
    except NotImplementedError:
        print("hook_processor.storage is still a stub (NotImplementedError)", file=sys.stderr)
        return 3
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "files": stats.files,
                "bytes": stats.bytes,
                "retries": stats.retries,
                "setup_seconds": round(ready - started, 4),
                "transfer_seconds": round(done - ready, 4),
                "manifest": manifest,
                "engine": client.name,
                "engine_choice": client.choice,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
