"""Progress of long transfers: bars on a real pseudo-terminal, nothing on a pipe, JSON events.

The commands run as real subprocesses, stderr on the slave side of a pty (``os.openpty``), with
``HOOK_PROGRESS_MIN_SECONDS=0`` so that transfers of a few MB show their progress.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultProxy, Rule
from pydantic import SecretStr
from tqdm import tqdm

from hook_processor import _progress, _progress_relay
from hook_processor.storage import S3Target, TransferSettings, make_client, stage_in

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
INPUTS = {"a.txt": 1_200_000, "b.txt": 1_500_000, "sub/c.txt": 900_000}  # name: size in bytes
TOTAL = sum(INPUTS.values())
# hello_world publishes its STAC catalog beside the outputs: catalog.json and one item per
# product (a.txt, b.txt, sub). Its ~2 kB do not change the 3.60MB a bar shows.
STAC = 4


def stac_bytes(out: Path) -> int:
    """The size of the STAC catalog a run downloaded (or unpacked) into ``out``."""
    return sum(p.stat().st_size for p in [out / "catalog.json", *(out / "_stac").glob("*.json")])


LABELS = ("upload inputs", "stage-in", "publish", "download outputs")


def write_inputs(root: Path) -> Path:
    """A few MB of text (hello_world upper-cases it): the bytes of each file known exactly."""
    folder = root / "input"
    for name, size in INPUTS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((b"some text for the bar\n" * (size // 22 + 1))[:size])
    return folder


def run_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hook_processor", "run", str(HELLO_WORLD), *args]


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HOOK_PROGRESS_MIN_SECONDS": "0", **extra}


def on_terminal(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``command`` with stderr on a 120-column pseudo-terminal: (exit code, stdout, tty)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            cwd=cwd,
        )
    finally:
        os.close(slave)
    seen: list[bytes] = []

    def pump() -> None:  # drain the terminal, or the child blocks once its buffer is full
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every slave side is closed
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        stdout, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        reader.join(10)
        os.close(master)
    return child.returncode, stdout.decode(), b"".join(seen).decode("utf-8", "replace")


def bar(label: str, total: int, files: int) -> re.Pattern[str]:
    """The final state of one phase's bar: 100%, bytes and files of the total, time, rate."""
    size = re.escape(tqdm.format_sizeof(total) + "B")
    return re.compile(
        rf"{re.escape(label)}: 100%\|[^|]*\| {size}/{size}, {files}/{files} files "
        r"\[\d\d:\d\d<\d\d:\d\d, [\d.]+ ?[kMG]?B/s\]"
    )


def test_run_on_a_terminal_shows_a_bar_with_totals_for_every_transfer(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path)
    code, stdout, terminal = on_terminal(
        run_command("--input", str(inputs), "--output", "out"), child_env(), tmp_path
    )

    assert code == 0, terminal
    assert (tmp_path / "out" / "sub" / "c.txt").stat().st_size == INPUTS["sub/c.txt"]
    manifest = (tmp_path / "out" / "_manifest.json").stat().st_size
    files = len(INPUTS)
    assert bar("upload inputs", TOTAL, files).search(terminal), terminal
    assert bar("stage-in", TOTAL, files).search(terminal), terminal
    catalog = stac_bytes(tmp_path / "out")
    assert bar("publish", TOTAL + catalog, files + STAC).search(terminal), terminal
    assert bar("download outputs", TOTAL + manifest + catalog, files + 1 + STAC).search(terminal)
    for label in LABELS:  # each bar was drawn before its end too, and redrawn in place
        assert re.search(rf"\r{re.escape(label)}:   0%\|", terminal), terminal
    # log lines written while a bar is shown go above it, whole
    assert re.search(r"\n[^\r\n]*INFO    stage-in: 3 files, 3\.6 MB in ", terminal), terminal
    assert "completed" in stdout and "\r" not in stdout


def test_run_with_stderr_piped_shows_no_bar_and_keeps_its_log_lines(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path)
    done = subprocess.run(
        run_command("--input", str(inputs), "--output", "out"),
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr and "files [" not in done.stderr
    assert "hook-processor run: uploaded 3 input files (3600000 bytes)" in done.stderr
    assert re.search(r"INFO    stage-in: 3 files, 3\.6 MB in [\d.]+ s\n", done.stderr)
    assert "INFO    publish: 7 products, 3.6 MB\n" in done.stderr


@pytest.mark.parametrize("storage", ["PRIVATE", "TEMPORARY"])
def test_json_logs_carry_progress_events_with_totals(tmp_path: Path, storage: str) -> None:
    inputs = write_inputs(tmp_path)
    done = subprocess.run(
        run_command("--input", str(inputs), "--output", "out", "--output-storage", storage),
        env=child_env(HOOK_LOG_FORMAT="json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    events = [e for e in lines if e.get("event") == "progress"]
    by_phase: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_phase.setdefault(event["phase"], []).append(event)
    assert list(by_phase) == ["upload_input", "stage_in", "publish", "download_output"]
    out = tmp_path / "out"
    catalog = stac_bytes(out)
    if storage == "PRIVATE":
        manifest = (out / "_manifest.json").stat().st_size
        downloaded = (len(INPUTS) + 1 + STAC, TOTAL + manifest + catalog)
    else:
        (archive,) = out.glob("*.zip")
        downloaded = (1, archive.stat().st_size)
    expected = {
        "upload_input": (len(INPUTS), TOTAL),
        "stage_in": (len(INPUTS), TOTAL),
        "publish": (len(INPUTS) + STAC, TOTAL + catalog),  # TEMPORARY: the bytes zipped
        "download_output": downloaded,
    }
    for phase, (files, nbytes) in expected.items():
        first, *_, last = by_phase[phase]
        assert (first["files_total"], first["bytes_total"]) == (files, nbytes), first
        assert not first["final"] and last["final"], by_phase[phase]
        assert (last["files_done"], last["bytes_done"]) == (files, nbytes), last
        assert last["rate"] > 0 and last["logger"] == "hook_processor.progress"
        assert last["message"].endswith("/s") and f"{files}/{files} files" in last["message"]
        # bounded frequency: one when the phase starts, one per interval, the last one
        assert len(by_phase[phase]) <= 2 + last["elapsed"] / _progress.EVENT_INTERVAL


def test_exec_on_a_terminal_shows_stage_in_and_publish_bars(tmp_path: Path, s3_server: Any) -> None:
    client = s3_server.client()
    bucket = f"p-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for name, size in INPUTS.items():
        client.put_object(Bucket=bucket, Key=f"in/{name}", Body=b"x" * size)
    env = child_env(
        SOURCE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        SOURCE_S3_PATH=f"s3://{bucket}/in/",
        SOURCE_S3_ACCESS_KEY=s3_server.access_key,
        SOURCE_S3_SECRET_KEY=s3_server.secret_key,
        OUTPUT_STORAGE="PRIVATE",
        OUTPUT_S3_ENDPOINT_URL=s3_server.endpoint_url,
        OUTPUT_S3_PATH=f"s3://{bucket}/out",
        OUTPUT_S3_ACCESS_KEY=s3_server.access_key,
        OUTPUT_S3_SECRET_KEY=s3_server.secret_key,
        HOOK_WORK_DIR=str(tmp_path / "work"),
    )
    command = [sys.executable, "-m", "hook_processor", "exec", "--project", str(HELLO_WORLD)]

    code, _, terminal = on_terminal(command, env, tmp_path)

    assert code == 0, terminal
    assert bar("stage-in", TOTAL, len(INPUTS)).search(terminal), terminal
    assert bar("publish", TOTAL, len(INPUTS) + STAC).search(terminal), terminal
    assert "INFO    completed: 3 files" in terminal


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_json_events_start_after_the_threshold_and_are_bounded_in_frequency() -> None:
    clock, stream = FakeClock(), io.StringIO()
    display = _progress.EventDisplay(stream, min_seconds=1.0, clock=clock)
    tracker = display.factory("stage_in")
    tracker.start(10, 10_000)
    for step in range(40):  # 10 s of updates, one every 0.25 s
        clock.now += 0.25
        tracker(250)
        if step % 4 == 3:
            tracker.file_done()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]

    # first at 1 s, then one per EVENT_INTERVAL (at 6 s), and the last one when done (10 s)
    assert [round(e["elapsed"]) for e in events] == [1, 6, 10]
    assert [e["final"] for e in events] == [False, False, True]
    assert events[0]["bytes_done"] == 1000 and events[0]["files_done"] == 0
    assert (events[-1]["files_done"], events[-1]["bytes_done"]) == (10, 10_000)
    assert events[-1]["rate"] == 1000.0 and events[1]["seconds_left"] == 4.0
    tracker(5)  # a tracker that ended shows nothing more
    assert len(stream.getvalue().splitlines()) == 3


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_transfer_shorter_than_the_threshold_shows_nothing_on_a_terminal() -> None:
    clock, terminal = FakeClock(), FakeTerminal()
    display = _progress.display_for(terminal, "text", 1.0)
    assert isinstance(display, _progress.TerminalDisplay)
    display.clock = clock
    tracker = display.factory("publish")
    tracker.start(2, 2000)
    clock.now += 0.9
    tracker(2000)
    tracker.file_done()
    tracker.file_done()
    display.close()

    assert terminal.getvalue() == ""
    assert _progress.display_for(io.StringIO(), "text") is None  # not a terminal: no display


def test_a_phase_that_stops_short_ends_when_the_next_begins() -> None:
    terminal = FakeTerminal()
    display = _progress.TerminalDisplay(terminal, min_seconds=0)
    failed = display.factory("stage_in")
    failed.start(2, 2000)
    failed(1000)
    display.wrap(terminal).write("an error line\n")
    display.factory("download_output")

    shown = terminal.getvalue()
    assert "\rstage-in:   0%|" in shown and "\ran error line\n\rstage-in:  50%|" in shown
    last = shown.rsplit("\r", 1)[1]  # the bar's last state, left on its own line
    assert last.startswith("stage-in:  50%|") and "| 1.00kB/2.00kB, 0/2 files [" in last
    assert last.endswith("B/s]\n")


def test_a_retried_download_is_not_counted_twice(s3_server: Any, tmp_path: Path) -> None:
    client = s3_server.client()
    bucket = f"r-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    blob = os.urandom(3 * 1024 * 1024)
    client.put_object(Bucket=bucket, Key="in/blob.bin", Body=blob)
    tracker = _progress.Tracker("stage_in")
    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        # the body breaks after more than one CHUNK (1 MiB) was received and counted
        proxy.add_rule(
            Rule(
                fault="reset_after",
                after_bytes=1_500_000,
                methods="GET",
                key_pattern=r"/in/blob\.bin$",
                count=1,
            )
        )
        target = S3Target(
            proxy.endpoint_url, SecretStr(s3_server.access_key), SecretStr(s3_server.secret_key)
        )
        settings = TransferSettings(concurrency=1)
        stats = stage_in(
            make_client(target, settings), bucket, "in/", tmp_path, settings, progress=tracker
        )

    assert [e.rule for e in proxy.events] == ["reset_after"] and stats.retries >= 1
    assert (tmp_path / "blob.bin").read_bytes() == blob
    assert (tracker.files_total, tracker.bytes_total) == (1, len(blob))
    assert (tracker.files_done, tracker.bytes_done) == (1, len(blob))


# --- the child modes: the child relays its progress, the parent draws the bars -----------------

RELAY_MARK = "hook-progress"  # any piece of a relayed event line


def test_run_in_subprocess_mode_on_a_terminal_shows_the_childs_bars(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path)
    command = run_command("--input", str(inputs), "--output", "out", "--mode", "subprocess")

    code, stdout, terminal = on_terminal(command, child_env(), tmp_path)

    assert code == 0, terminal
    assert (tmp_path / "out" / "sub" / "c.txt").stat().st_size == INPUTS["sub/c.txt"]
    manifest = (tmp_path / "out" / "_manifest.json").stat().st_size
    files = len(INPUTS)
    assert bar("upload inputs", TOTAL, files).search(terminal), terminal
    assert bar("stage-in", TOTAL, files).search(terminal), terminal  # drawn from the child's
    catalog = stac_bytes(tmp_path / "out")
    assert bar("publish", TOTAL + catalog, files + STAC).search(terminal), terminal  # by the parent
    assert bar("download outputs", TOTAL + manifest + catalog, files + 1 + STAC).search(terminal)
    assert RELAY_MARK not in terminal and "\x1e" not in terminal, terminal
    assert "unknown setting" not in terminal  # HOOK_PROGRESS_EVENTS is one the runtime knows
    # the child's log lines pass through, whole, above the bars
    assert re.search(r"\n[^\r\n]*INFO    stage-in: 3 files, 3\.6 MB in ", terminal), terminal
    assert "INFO    completed: 3 files" in terminal
    assert "completed" in stdout and "\r" not in stdout


def test_run_in_subprocess_mode_with_stderr_piped_relays_nothing(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path)
    done = subprocess.run(
        run_command("--input", str(inputs), "--output", "out", "--mode", "subprocess"),
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert RELAY_MARK not in done.stderr and "\x1e" not in done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr and "files [" not in done.stderr
    assert re.search(r"INFO    stage-in: 3 files, 3\.6 MB in [\d.]+ s\n", done.stderr)
    assert "INFO    publish: 7 products, 3.6 MB\n" in done.stderr


def test_run_in_subprocess_mode_with_json_logs_keeps_the_childs_own_events(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path)
    command = run_command("--input", str(inputs), "--output", "out", "--mode", "subprocess")

    code, _, terminal = on_terminal(command, child_env(HOOK_LOG_FORMAT="json"), tmp_path)

    assert code == 0, terminal
    assert RELAY_MARK not in terminal and "%|" not in terminal
    events = [
        json.loads(line)
        for line in terminal.replace("\r\n", "\n").splitlines()
        if line.startswith('{"') and '"event": "progress"' in line
    ]
    phases = {e["phase"]: e for e in events if e["final"]}
    assert set(phases) == {"upload_input", "stage_in", "publish", "download_output"}
    assert (phases["stage_in"]["files_done"], phases["stage_in"]["bytes_done"]) == (3, TOTAL)


def test_exec_asked_to_relay_writes_event_lines_and_warns_on_another_value(
    tmp_path: Path, s3_server: Any
) -> None:
    client = s3_server.client()
    bucket = f"p-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for name, size in INPUTS.items():
        client.put_object(Bucket=bucket, Key=f"in/{name}", Body=b"x" * size)
    command = [sys.executable, "-m", "hook_processor", "exec", "--project", str(HELLO_WORLD)]

    def run_exec(value: str, run: int) -> str:
        env = child_env(
            SOURCE_S3_ENDPOINT_URL=s3_server.endpoint_url,
            SOURCE_S3_PATH=f"s3://{bucket}/in/",
            SOURCE_S3_ACCESS_KEY=s3_server.access_key,
            SOURCE_S3_SECRET_KEY=s3_server.secret_key,
            OUTPUT_S3_ENDPOINT_URL=s3_server.endpoint_url,
            OUTPUT_S3_PATH=f"s3://{bucket}/out{run}",
            OUTPUT_S3_ACCESS_KEY=s3_server.access_key,
            OUTPUT_S3_SECRET_KEY=s3_server.secret_key,
            HOOK_WORK_DIR=str(tmp_path / f"work{run}"),
            HOOK_PROGRESS_MIN_SECONDS="100",  # the parent's threshold: the child relays anyway
            HOOK_PROGRESS_EVENTS=value,
        )
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    relayed_log = run_exec("relay", 1)
    events = [
        json.loads(line.removeprefix(_progress_relay.PREFIX))
        for line in relayed_log.split("\n")
        if line.startswith(_progress_relay.PREFIX)
    ]
    finals = {e["phase"]: e for e in events if e["final"]}
    assert set(finals) == {"stage_in", "publish"}
    stage_in, publish = finals["stage_in"], finals["publish"]
    assert (stage_in["files_done"], stage_in["files_total"]) == (3, 3), stage_in
    assert stage_in["bytes_done"] == stage_in["bytes_total"] == TOTAL, stage_in
    assert (publish["files_done"], publish["files_total"]) == (3 + STAC, 3 + STAC), publish
    assert publish["bytes_done"] == publish["bytes_total"] > TOTAL, publish  # with the catalog
    assert "unknown setting" not in relayed_log and "ignored" not in relayed_log

    other = run_exec("yes", 2)
    assert RELAY_MARK not in other
    assert (
        "WARNING HOOK_PROGRESS_EVENTS='yes' ignored: it is set by hook-processor run only" in other
    )


def relayed(phases: list[tuple[str, int, int]]) -> str:
    """What a child writes for ``phases`` (name, files, bytes per file), with log lines."""
    stream = io.StringIO()
    display = _progress_relay.RelayDisplay(stream)
    for phase, files, size in phases:
        stream.write(f"2026-01-01T00:00:00Z INFO    {phase} starts\n")
        tracker = display.factory(phase)
        tracker.start(files, files * size)
        for _ in range(files):
            tracker(size)
            tracker.file_done()
    display.close()
    stream.write("2026-01-01T00:00:00Z INFO    completed\nno newline at the end")
    return stream.getvalue()


class Recorder:
    """A progress factory keeping the trackers it made (no view: only the counts)."""

    def __init__(self) -> None:
        self.trackers: list[_progress.Tracker] = []

    def __call__(self, phase: str) -> _progress.Tracker:
        self.trackers.append(_progress.Tracker(phase))
        return self.trackers[-1]


def test_relayed_events_become_trackers_at_any_chunk_boundary() -> None:
    text = relayed([("stage_in", 3, 1000), ("publish", 2, 500)])
    assert text.count(_progress_relay.PREFIX) >= 4  # an event per phase start and end at least
    # (not splitlines(): it also cuts at the prefix's record separator)
    others = "".join(line for line in re.split(r"(?<=\n)", text) if RELAY_MARK not in line)

    for size in (1, 2, 7, len(_progress_relay.PREFIX), 64, len(text)):
        recorder = Recorder()
        reader = _progress_relay.ProgressReader(recorder)
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        shown = "".join(reader.feed(chunk) for chunk in chunks) + reader.finish()

        assert shown == others, size
        counts = [
            (t.phase, t.files_done, t.files_total, t.bytes_done, t.bytes_total)
            for t in recorder.trackers
        ]
        assert counts == [("stage_in", 3, 3, 3000, 3000), ("publish", 2, 2, 1000, 1000)], size


def test_a_line_that_only_looks_like_an_event_passes_through() -> None:
    recorder = Recorder()
    reader = _progress_relay.ProgressReader(recorder)
    broken = _progress_relay.PREFIX + "{not json\n"
    text = "\x1eother\n" + broken + "hook-progress is a word\n" + _progress_relay.PREFIX + '{"ph'

    shown = reader.feed(text) + reader.finish()

    # lines that are not events are kept as they are; an event cut by the end of output is not
    assert shown == "\x1eother\n" + broken + "hook-progress is a word\n"
    assert recorder.trackers == []


def test_an_event_inside_a_partial_line_of_the_child_is_still_an_event() -> None:
    recorder = Recorder()
    reader = _progress_relay.ProgressReader(recorder)
    event = relayed([("publish", 1, 10)]).split("\n")[2] + "\n"  # its final event
    assert event.startswith(_progress_relay.PREFIX)
    text = "print without newline, " + event + "then its end\n"

    shown = "".join(reader.feed(text[i : i + 5]) for i in range(0, len(text), 5))

    assert shown + reader.finish() == "print without newline, then its end\n"
    assert [(t.phase, t.files_done, t.bytes_done) for t in recorder.trackers] == [
        ("publish", 1, 10)
    ]


def test_a_relayed_phase_that_stops_short_ends_with_its_final_event() -> None:
    stream, terminal = io.StringIO(), FakeTerminal()
    child = _progress_relay.RelayDisplay(stream)
    tracker = child.factory("stage_in")
    tracker.start(2, 2000)
    tracker(1000)
    child.close()  # the transfer failed: the child's last event is final, 1 of 2 kB
    parent = _progress.TerminalDisplay(terminal, min_seconds=0)
    reader = _progress_relay.ProgressReader(parent.factory)

    assert reader.feed(stream.getvalue() + "ERROR   staging failed\n") == "ERROR   staging failed\n"
    last = terminal.getvalue().rsplit("\r", 1)[1]
    assert last.startswith("stage-in:  50%|") and "| 1.00kB/2.00kB, 0/2 files [" in last
    assert last.endswith("B/s]\n")  # the bar was closed, left on its own line
