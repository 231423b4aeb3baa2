"""A disk that fills up while staging: exit 3, the result is still written, the input is freed.

Before, a stage-in that left the disk full ended with "could not write the result ... Errno 28"
(the platform got no result at all) and the staged input stayed, keeping the disk full. The work
dir and the result are on a 2 MiB tmpfs here (``small_disk``, root only).
"""

from __future__ import annotations

import json

import pytest
import test_reliability as rel
from test_reliability import (
    COPY_PROCESSOR,
    listing,
    order_env,
    put_objects,
    run,
    temp_leftovers,
    write_project,
)

from hook_processor.errors import ExitCode

MiB = 1024 * 1024
s3, buckets, small_disk = rel.s3, rel.buckets, rel.small_disk  # its fixtures


@pytest.mark.parametrize(
    "objects",
    [
        # The first file fills the 2 MiB disk to the last page, the next one finds no room:
        # its own temporary file is removed, the disk stays full with the first.
        {"in/a.bin": b"a" * (2 * MiB), "in/b.bin": b"b"},
        {"in/a.bin": b"a" * MiB, "in/b.bin": b"b" * MiB, "in/c.bin": b"c" * MiB},
    ],
    ids=["exactly-full", "over-full"],
)
def test_disk_full_while_staging_writes_the_result_and_frees_the_input(
    s3_server,
    s3,
    buckets,
    tmp_path,
    small_disk,
    objects,
) -> None:
    in_bucket, out_bucket = buckets
    put_objects(s3, in_bucket, objects)
    work = small_disk / "work"  # the result goes to work/result.json: on the full disk too
    env = order_env(
        s3_server,
        work,
        source=f"s3://{in_bucket}/in/",
        output=f"s3://{out_bucket}/run",
        HOOK_CONCURRENCY="1",  # in key order: a.bin first
    )

    result = run(env, write_project(tmp_path, COPY_PROCESSOR))

    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "No space left on device" in result.status_message
    written = json.loads((work / "result.json").read_text())
    assert written["ExitCode"] == 3
    assert written["StatusMessage"] == result.status_message
    assert [p for p in (work / "input").rglob("*")] == []  # the staged input is freed
    assert temp_leftovers(small_disk) == []
    assert sorted(p.name for p in work.iterdir() if p.is_file()) == [
        ".hook-processor-workdir",
        "result.json",
    ]  # and nothing held for the result is left behind
    assert listing(s3, out_bucket) == {}
