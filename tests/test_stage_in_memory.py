"""What a stage-in keeps per listed key, measured with tracemalloc (no S3 server needed).

At 100,000 keys the listing, the plan and the download units were held for the whole stage-in
(~1.7 KB a key: dicts per key, a Remote per key, a list of every unit's closures), which put the
peak RSS of ``exec`` far over its 120 MB target. These tests bound the bytes per key of what is
held: the listing and the plan, and the units, which must be made as the pool takes them.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from memory_helpers import traced_bytes

from hook_processor._s3 import download
from hook_processor._s3.engine import TransferSettings
from hook_processor._s3.transfer import Job
from hook_processor.errors import StagingError

KEYS = 20_000
PAGE = 1_000


class _Pages:
    """An engine's ListObjectsV2 answering S3-like pages of ``KEYS`` keys, as boto3 shapes them."""

    endpoint_url = "http://127.0.0.1:1"

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        start = int(params.get("ContinuationToken", "0"))
        end = min(start + PAGE, KEYS)
        page: dict[str, Any] = {
            "Contents": [
                {
                    "Key": f"{params['Prefix']}d{i % 10}/e{i // 10 % 10}/f{i:06d}.bin",
                    "Size": 4096,
                    "ETag": f'"{i:032x}"',
                    "LastModified": "2026-01-01T00:00:00.000Z",
                    "StorageClass": "STANDARD",
                }
                for i in range(start, end)
            ],
            "IsTruncated": end < KEYS,
        }
        if end < KEYS:
            page["NextContinuationToken"] = str(end)
        return page


def _job() -> Job:
    return Job(
        _Pages(),  # type: ignore[arg-type]
        "bench",
        TransferSettings(),
        error=StagingError,
        phase="staging the input",
        cancel=None,
        progress=None,
    )


def test_listing_and_plan_hold_under_200_bytes_a_key(traced: None) -> None:
    job = _job()
    before = traced_bytes()
    tracemalloc.reset_peak()
    listing = download.list_objects(job, "src/")
    remotes = download.plan(job, listing, "src/")
    held = traced_bytes() - before
    peak = tracemalloc.get_traced_memory()[1] - before
    # Before: ~345 bytes a key for the listing's dicts and ~180 more for the plan's Remotes.
    assert held / KEYS < 200, f"{held / KEYS:.0f} bytes a key held by the listing and plan"
    # The plan's checks (paths, file/folder conflicts) may not copy the listing either.
    assert (peak - held) / KEYS < 100, f"{(peak - held) / KEYS:.0f} bytes a key in plan()"
    assert len(remotes) == KEYS
    assert remotes.total_size() == KEYS * 4096
    first = next(iter(remotes))
    assert (first.key, first.size, first.etag, first.rel) == (
        "src/d0/e0/f000000.bin",
        4096,
        f'"{0:032x}"',
        "d0/e0/f000000.bin",
    )


def test_units_are_made_as_they_are_taken(tmp_path: Path, traced: None) -> None:
    job = _job()
    remotes = download.plan(job, download.list_objects(job, "src/"), "src/")
    temps = download.TempFiles(tmp_path)
    before = traced_bytes()
    tracemalloc.reset_peak()
    units = download.units(job, remotes, temps)
    taken = [next(iter(units)) for _ in range(8)]  # what Job.run holds: a few at a time
    held = traced_bytes() - before
    # Before: a list of every unit (~1.2 KB a key: 24 MB here) was made at once.
    assert held < 200_000, f"{held} bytes held by 8 units of {KEYS}"
    assert len(taken) == 8
    assert sum(1 for _ in units) == KEYS - 8
