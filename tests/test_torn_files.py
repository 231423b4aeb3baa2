"""A file still being written after process() returns is never published as a complete set.

process() starts a thread that keeps rewriting its output files in place (same size) and
returns; publication must notice (size, mtime_ns, ctime_ns, inode before the first read and
after the last) and fail: exit 5, no manifest, the file named.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest

from hook_processor import runtime
from hook_processor._s3 import walk
from hook_processor.errors import ExitCode, PublishError
from hook_processor.options import OptionSources

WRITER = """
import os
import threading
import time
from pathlib import Path

STOP = Path({stop!r})


def _keep_writing(path, size):
    # Rewrite 4 KiB in place, again and again: the size never changes, the bytes do.
    fd = os.open(path, os.O_WRONLY)
    n = 0
    deadline = time.monotonic() + 60
    try:
        while not STOP.exists() and time.monotonic() < deadline:
            n += 1
            os.pwrite(fd, bytes([n % 256]) * 4096, (n * 4096) % (size - 4096))
            time.sleep(0.001)
    finally:
        os.close(fd)


def process(input_dir, output_dir):
    (output_dir / "steady.txt").write_bytes(b"never changes")
    target = output_dir / {name!r}
    target.write_bytes(bytes({size}))
    threading.Thread(target=_keep_writing, args=(target, {size}), daemon=True).start()
"""


def _project(tmp_path: Path, name: str, size: int) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    module = f"torn_{uuid.uuid4().hex[:8]}"
    stop = tmp_path / "stop"
    (project / f"{module}.py").write_text(
        textwrap.dedent(WRITER.format(stop=str(stop), name=name, size=size))
    )
    (project / "pyproject.toml").write_text(
        f'[tool.hook-processor]\nname = "torn"\nentrypoint = "{module}:process"\n'
    )
    return project


@pytest.mark.parametrize(
    ("name", "size", "part_mb"),
    [("torn.bin", 256 * 1024, "5"), ("torn-multipart.bin", 12 * 1024 * 1024, "5")],
    ids=["single-put", "multipart"],
)
def test_a_file_rewritten_after_process_returns_fails_5_without_manifest(
    s3, bucket, private_exec_env, tmp_path: Path, name: str, size: int, part_mb: str
) -> None:
    s3.put_object(Bucket=bucket, Key="in/x.txt", Body=b"x")
    env = dict(private_exec_env, HOOK_PART_SIZE_MB=part_mb)  # 12 MiB: 3 parts over 10 MiB
    try:
        result = runtime.run(OptionSources(env=env), project_dir=_project(tmp_path, name, size))
    finally:
        (tmp_path / "stop").touch()

    assert result.exit_code == ExitCode.PUBLISH_FAILED, result.status_message
    assert name in result.status_message
    assert "changed while it was being published" in result.status_message
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])
    assert "out/_manifest.json" not in [o["Key"] for o in listed]


def test_a_file_changed_after_its_upload_is_caught_before_the_manifest(tmp_path: Path) -> None:
    """The last check: a file rewritten (same size) after its bytes were sent."""
    (tmp_path / "a.txt").write_bytes(b"aaaa")
    files = walk.walk(tmp_path)
    walk.check_unchanged(tmp_path, files)  # untouched: fine
    fd = os.open(tmp_path / "a.txt", os.O_WRONLY)
    os.pwrite(fd, b"b", 0)
    os.close(fd)
    os.utime(tmp_path / "a.txt", ns=(1, 1))  # a different mtime whatever the clock's tick
    with pytest.raises(PublishError, match=r"a\.txt changed while it was being published"):
        walk.check_unchanged(tmp_path, files)


def test_a_file_rewritten_while_zipped_fails_5_without_link(
    s3_server, s3, bucket, private_exec_env, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/x.txt", Body=b"x")
    env = dict(
        private_exec_env,
        OUTPUT_STORAGE="TEMPORARY",
        HOOK_TEMPORARY_S3_ENDPOINT_URL=s3_server.endpoint_url,
        HOOK_TEMPORARY_S3_BUCKET=bucket,
        HOOK_TEMPORARY_S3_ACCESS_KEY=s3_server.access_key,
        HOOK_TEMPORARY_S3_SECRET_KEY=s3_server.secret_key,
    )
    try:
        project = _project(tmp_path, "zipped.bin", 4 * 1024 * 1024)
        result = runtime.run(OptionSources(env=env), project_dir=project)
    finally:
        (tmp_path / "stop").touch()

    assert result.exit_code == ExitCode.PUBLISH_FAILED, result.status_message
    assert "zipped.bin changed while it was being published" in result.status_message
    assert not result.to_json().get("DownloadLink")
