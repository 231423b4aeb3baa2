"""The embedded S3's mirror (hook_processor.s3state) over successive lives of the server.

moto keeps one state per process, shared by every server it runs: each life is its own Python
process, so what the next one finds came from the mirror and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

_PRELUDE = """
import json, sys
from pathlib import Path
from hook_processor import s3state
from hook_processor.s3server import EmbeddedS3
s3state.PART_SIZE = 5 * 1024 * 1024  # moto's smallest part: a 12 MB object goes in 3 parts
embedded = EmbeddedS3(state_dir=Path(sys.argv[1]))
server = embedded.start()
c = server.client()
out = {"restored": list(embedded.restored)}

def store():
    import hashlib
    found = {}
    for b in c.list_buckets()["Buckets"]:
        found[b["Name"]] = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
            for o in page.get("Contents", []):
                got = c.get_object(Bucket=b["Name"], Key=o["Key"])
                found[b["Name"]][o["Key"]] = [
                    hashlib.md5(got["Body"].read()).hexdigest(), got["ContentType"],
                    got["Metadata"], got.get("ContentEncoding"), o["ETag"],
                ]
    return found
"""


def _life(state: Path, body: str) -> dict[str, Any]:
    """One life of the server: start over ``state``, run ``body``, stop (the last sync)."""
    code = _PRELUDE + textwrap.dedent(body) + "\nembedded.stop()\nprint(json.dumps(out))\n"
    done = subprocess.run(
        [sys.executable, "-c", code, str(state)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_objects_headers_and_empty_buckets_come_back_and_deletions_stay_deleted(
    tmp_path: Path,
) -> None:
    state = tmp_path / "s3"
    first = _life(
        state,
        """
        c.create_bucket(Bucket="data")
        c.create_bucket(Bucket="empty")
        c.put_object(Bucket="data", Key="a/typed.json", Body=b"{}", ContentType="application/json",
                     ContentEncoding="gzip", Metadata={"owner": "alice"})
        c.put_object(Bucket="data", Key="gone.txt", Body=b"soon deleted")
        c.put_object(Bucket="data", Key="changed.txt", Body=b"first")
        c.put_object(Bucket="data", Key="big.bin", Body=bytes(range(256)) * (48 * 1024))
        import io
        from boto3.s3.transfer import TransferConfig
        parts = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
        c.upload_fileobj(io.BytesIO(b"p" * (12 << 20)), "data", "parts.bin", Config=parts)
        out["store"] = store()
        """,
    )
    assert first["restored"] == [0, 0]
    second = _life(
        state,
        """
        out["store"] = store()
        c.delete_object(Bucket="data", Key="gone.txt")
        c.put_object(Bucket="data", Key="changed.txt", Body=b"second")
        c.delete_bucket(Bucket="empty")
        out["after"] = store()
        """,
    )
    assert first["store"]["data"]["parts.bin"][4].endswith('-3"')  # a multipart upload
    assert second["store"] == first["store"]  # bytes, type, metadata, encoding, ETag
    assert second["store"]["empty"] == {}
    assert second["store"]["data"]["a/typed.json"][1:4] == [
        "application/json",
        {"owner": "alice"},
        "gzip",
    ]
    assert second["restored"][0] == 5 and second["restored"][1] > 24 * 1024 * 1024
    third = _life(state, 'out["store"] = store()')
    assert third["store"] == second["after"]
    assert set(third["store"]) == {"data"}
    assert set(third["store"]["data"]) == {"a/typed.json", "changed.txt", "big.bin", "parts.bin"}
    # One file per object in the mirror: replaced and deleted ones are gone from disk too.
    assert len([p for p in (state / "objects").glob("*/*") if p.is_file()]) == 4


def test_a_half_written_file_is_removed_and_a_missing_one_dropped(tmp_path: Path) -> None:
    state = tmp_path / "s3"
    _life(state, 'c.create_bucket(Bucket="dots"); c.put_object(Bucket="dots", Key="k", Body=b"x")')
    (stray,) = list((state / "objects").glob("*/*"))
    leftover = stray.parent / "0123.part"  # what a sync killed while copying leaves
    leftover.write_bytes(b"partial")
    assert _life(state, 'out["store"] = store()')["store"]["dots"]["k"][0]
    assert not leftover.exists()
    stray.unlink()  # a file removed by hand: the object is dropped, the start goes on
    assert _life(state, 'out["store"] = store()')["store"] == {"dots": {}}
