"""``hook-processor serve`` as a process: Ctrl-C while an item runs, a restart that runs what was
queued, the start-up text, and bad arguments (one message, exit 2). ``sleep_time`` values are
short (1-20 s; the item Ctrl-C stops sleeps 20 s so that waiting for it would show), not
the notebook's 120."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).parent))

from serve_process import (  # noqa: E402
    HELLO_WORLD,
    SAMPLE,
    child_env,
    hello_body,
    hook_processor_command,
    odp_test_body,
    put_input,
    serving,
)


def test_ctrl_c_cancels_the_running_item_and_a_restart_runs_the_queued_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with serving([str(HELLO_WORLD), "--concurrency", "1"], data) as served:
        running = served.submit(odp_test_body("sleeper", sleep_time=20))
        served.wait_for(running, {"in_progress"}, timeout=30)
        queued = served.submit(odp_test_body("after the restart", sleep_time=1, priority=90))
        assert [i["Status"] for i in served.products(queued)] == ["queued"]
        began = time.monotonic()
        assert served.stop(signal.SIGINT, as_terminal=True) == 0
        assert time.monotonic() - began < 12, "serve waited for the item instead of cancelling"
        log = served.stderr()
        assert "Traceback" not in log and "Aborted" not in log, log

    # The same data dir: the cancelled item stays cancelled, its message saying that serve was
    # stopped while it ran (it was running: in_progress), not that it never started; the queued
    # one runs (test_serve_restart.py: the embedded S3's objects across the restart).
    with serving([str(HELLO_WORLD), "--concurrency", "1"], data) as served:
        (item,) = served.products(running)
        assert item["Status"] == "cancelled", item
        assert item["StatusMessage"].startswith(
            "cancelled: hook-processor serve was stopped (SIGINT) while the item ran; "
        ), item
        assert "before the run started" not in item["StatusMessage"], item
        (done,) = served.wait_for(queued, {"completed", "failed"}, timeout=60)
        assert done["Status"] == "completed", done
        assert served.stop(signal.SIGTERM) == 0


def test_a_restart_keeps_the_embedded_s3_endpoint(tmp_path: Path) -> None:
    """Queued orders name the endpoint in their options: a restart keeps its port."""
    with serving([str(HELLO_WORLD)], tmp_path / "data") as served:
        first = served.s3_endpoint
        input_path = put_input(served)
        order_id = served.submit(hello_body(served, input_path, name="one"))
        (done,) = served.wait_for(order_id, {"completed", "failed"})
        assert done["Status"] == "completed", done
        archive = requests.get(
            f"{served.root}BatchOrder({order_id})/Product({done['Id']})/$value",
            headers=served.headers(),
            timeout=30,
        )
        zip_path = tmp_path / "out.zip"
        zip_path.write_bytes(archive.content)
        with zipfile.ZipFile(zip_path) as opened:
            (member,) = [n for n in opened.namelist() if n.endswith("example.data")]
            assert opened.read(member).decode() == SAMPLE.read_text().upper()
        assert served.stop() == 0
    with serving([str(HELLO_WORLD)], tmp_path / "data") as served:
        assert served.s3_endpoint == first


def test_the_start_up_text_names_every_address(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            *hook_processor_command(),
            "serve",
            str(HELLO_WORLD),
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(7)]
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    text = "".join(lines)
    assert "dedl_hello_world" in text and "odp-test" in text, text
    assert "/auth/realms/dedl/protocol/openid-connect/token" in text
    assert "/odata/v1/" in text and "S3 endpoint   http://127.0.0.1:" in text
    assert f"data dir      {(tmp_path / 'd').resolve()}" in text
    assert child.returncode == 0, err


def _serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*hook_processor_command(), "serve", *args, "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


def test_a_folder_that_is_no_project_is_one_message_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    done = _serve(str(folder), "--port", "0", tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and str(folder) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "d").exists()  # nothing was started or written


def test_a_port_in_use_is_one_message_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(str(HELLO_WORLD), "--port", str(port), tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port} is in use" in done.stderr and "--port 0" in done.stderr
    assert done.stderr.count("Error:") == 1 and "Traceback" not in done.stderr


def test_s3_keys_without_an_endpoint_are_a_usage_error(tmp_path: Path) -> None:
    done = _serve(str(HELLO_WORLD), "--s3-secret-key", "k", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "--s3-access-key and --s3-secret-key go with --s3-endpoint" in done.stderr


def test_an_s3_endpoint_that_does_not_answer_is_one_message_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    secret = "unreachable-secret-Qv81"
    args = [str(HELLO_WORLD), "--port", "0", "--s3-endpoint", endpoint]
    done = _serve(*args, "--s3-access-key", "a", "--s3-secret-key", secret, tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("Error:") == 1 and "Traceback" not in done.stderr, done.stderr
    assert endpoint in done.stderr and "--s3-endpoint" in done.stderr, done.stderr
    assert secret not in done.stderr + done.stdout
    assert done.stdout == ""  # nothing was announced: the service never listened


def test_a_users_own_s3_endpoint_is_used_and_its_secret_never_printed(
    tmp_path: Path, s3_server: Any
) -> None:
    secret = "users-own-secret-Jm55"  # moto accepts any keys: a distinct one shows any leak
    args = [str(HELLO_WORLD), "--s3-endpoint", s3_server.endpoint_url]
    args += ["--s3-access-key", "users-own-access", "--s3-secret-key", secret]
    with serving(args, tmp_path / "data") as served:
        assert served.s3_endpoint == s3_server.endpoint_url
        assert served.info["s3_secret_key"] is None
        served.info["s3_secret_key"] = secret  # the user knows it
        input_path = put_input(served, "own-inputs")
        order_id = served.submit(hello_body(served, input_path, name="own store"))
        (done,) = served.wait_for(order_id, {"completed", "failed"})
        assert done["Status"] == "completed", done
        assert done["DownloadLink"].startswith(s3_server.endpoint_url + "/hook-temporary/")
        assert served.stop() == 0
        assert secret not in served.stderr() + "".join(served.stdout_lines)


def test_users_restricts_the_token_and_a_bad_users_file_is_exit_2(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"erin": "erins-password"}')
    with serving([str(HELLO_WORLD), "--users", str(users)], tmp_path / "data") as served:
        assert served.token("erin", "erins-password")
        form = {"grant_type": "password", "client_id": "ordering"}
        for user, password in (("erin", "wrong"), ("mallory", "erins-password")):
            answer = requests.post(
                served.token_url, data={**form, "username": user, "password": password}, timeout=30
            )
            assert answer.status_code == 401, answer.text
        assert served.stop() == 0
        assert "erins-password" not in served.stderr() + "".join(served.stdout_lines)
    users.write_text("erin:erins-password\n")
    done = _serve(str(HELLO_WORLD), "--users", str(users), "--port", "0", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(f"Error: --users {users}")
