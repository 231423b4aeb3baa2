"""What a publication keeps per file, measured with tracemalloc (no S3 server needed), and the
piecewise JSON encoder that writes the manifest and result.json (the same text as json.dumps).

At 100,000 files the walk (~550 bytes a file), the uploads' results (~350), the manifest's list
of dicts and the products (~270) were held together, which put the peak RSS of a publication
(and of ``exec``) far over its 120 MB target.
"""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from memory_helpers import traced_bytes

from hook_processor import _jsonstream
from hook_processor._s3 import upload, walk

FILES = 5_000


def test_walked_files_hold_under_150_bytes_each(tmp_path: Path) -> None:
    for i in range(FILES):
        folder = tmp_path / f"d{i % 10}" / f"e{i // 10 % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.bin").write_bytes(b"x" * (i % 7))
    tracemalloc.start()
    try:
        before = traced_bytes()
        files = walk.walk(tmp_path)
        held = traced_bytes() - before
        files.release_paths()  # after the last check of the files: their paths go
        released = traced_bytes() - before
    finally:
        tracemalloc.stop()
    assert len(files) == FILES
    # Before: a dataclass per file with its full path and a tuple of five ints (~550 bytes).
    assert held / FILES < 150, f"{held / FILES:.0f} bytes a walked file"
    assert released / FILES < 60, f"{released / FILES:.0f} bytes a walked file, paths released"
    rels = [f.rel for f in files]
    assert rels == sorted(rels)
    one = files[123]
    assert one.size == os.stat(tmp_path / one.rel).st_size
    with pytest.raises(RuntimeError, match="no longer keeps the path"):
        _ = one.path


def test_walked_files_keep_their_path_and_stamp(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "é.txt").write_bytes(b"abc")
    (tmp_path / "a.txt").write_bytes(b"")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a" / "b" / "é.txt")
    files = walk.walk(tmp_path)
    assert [f.rel for f in files] == ["a.txt", "a/b/é.txt", "link.txt"]
    for f, real in zip(files, ["a.txt", "a/b/é.txt", "a/b/é.txt"], strict=True):
        st = os.stat(tmp_path / real)
        assert f.path == os.path.realpath(tmp_path / real)
        assert (f.size, f.stamp) == (st.st_size, walk.stamp(st))


def test_upload_results_hold_under_80_bytes_each(traced: None) -> None:
    count = 20_000
    before = traced_bytes()
    results = upload.Results(count)
    for i in range(count):
        etag = hashlib.md5(str(i).encode()).hexdigest() if i % 100 else f"{i:x}-3"
        results.put(i, hashlib.sha256(str(i).encode()).digest(), etag)
    held = traced_bytes() - before
    # Before: a record of four strings per file in a dict by relative path (~350 bytes).
    assert held / count < 80, f"{held / count:.0f} bytes a result"
    assert results.sha256(7) == hashlib.sha256(b"7").hexdigest()
    assert results.etag(7) == hashlib.md5(b"7").hexdigest()
    assert results.etag(300) == "12c-3"


def test_results_refuse_a_file_never_uploaded() -> None:
    results = upload.Results(2)
    results.put(0, bytes(32), "x")
    with pytest.raises(KeyError):
        results.sha256(1)


def _entries(n: int) -> list[dict[str, Any]]:
    return [{"key": f"out/é{i}", "size": i, "sha256": f"{i:064x}"} for i in range(n)]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_piecewise_json_is_the_text_of_json_dumps(count: int) -> None:
    extra = {
        "identifiers": ["a", "ü\u2028"],
        "nested": {"empty": {}, "list": [], "n": [1, 2.5, None, True]},
        "order_id": None,
    }
    lazy = {"version": "1", "files": _jsonstream.Lazy(count, lambda: _entries(count)), **extra}
    plain = {"version": "1", "files": _entries(count), **extra}
    text = "".join(_jsonstream.pieces(lazy))
    assert text == json.dumps(plain, indent=2, ensure_ascii=False)
    assert "".join(_jsonstream.pieces({})) == json.dumps({}, indent=2)


def test_piecewise_json_makes_entries_one_at_a_time(traced: None) -> None:
    count = 20_000

    def entries() -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield {"key": f"out/d{i % 10}/f{i:06d}.bin", "size": 4096, "sha256": f"{i:064x}"}

    before = traced_bytes()
    tracemalloc.reset_peak()
    size = sum(len(p) for p in _jsonstream.pieces({"files": _jsonstream.Lazy(count, entries)}))
    peak = tracemalloc.get_traced_memory()[1] - before
    assert size > count * 100
    # Nothing is held per entry: a list of the entries' dicts alone is ~40 MB here.
    assert peak < 1_000_000, f"{peak} bytes at the peak of encoding {count} entries"


def test_the_walk_is_in_the_order_of_the_relative_paths(tmp_path: Path) -> None:
    """Folders are walked as their name and "/" sort: no list of the files is sorted after."""
    for rel in ["a", "a b/x", "a-c/y/z", "a.txt", "a/q", "a0", "ab/é", "B/1", "a/b/c", "a/b.c"]:
        path = tmp_path / rel
        if rel == "a":
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "a-link").symlink_to(tmp_path / "a-c")  # a link to a folder sorts as one
    files = walk.walk(tmp_path)
    rels = [f.rel for f in files]
    assert rels == sorted(rels)
    assert files.in_order  # made in order: the fallback sort did not run
    assert "a-link/y/z" in rels and len(rels) == 10
