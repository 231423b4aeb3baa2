"""``hook-processor serve`` restarted over the same ``--data-dir``: the embedded S3's objects are
still there (the user's input, PRIVATE output, the TEMPORARY zips behind the DownloadLinks), a
queued order whose input was put before the restart runs after it, and after a SIGKILL what was
mirrored before the kill (an item recorded ``completed`` has its output mirrored) is back."""

from __future__ import annotations

import hashlib
import io
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).parent))

from serve_process import (  # noqa: E402
    HELLO_WORLD,
    SAMPLE,
    Served,
    child_env,
    hello_body,
    hook_processor_command,
    odp_test_body,
    put_input,
    serving,
)


def _store(served: Served) -> dict[tuple[str, str], tuple[str, str, dict[str, str]]]:
    """Every object of the embedded S3: (bucket, key) -> (MD5 of its bytes, type, metadata)."""
    s3 = served.s3_client()
    found = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])
                digest = hashlib.md5(got["Body"].read()).hexdigest()
                found[(bucket["Name"], obj["Key"])] = (
                    digest,
                    got["ContentType"],
                    got["Metadata"],
                )
    return found


def _zip_text(served: Served, order_id: int, item_id: int) -> str:
    """The example.data in the item's zip, through ``$value`` (307 to its DownloadLink)."""
    answer = requests.get(
        f"{served.root}BatchOrder({order_id})/Product({item_id})/$value",
        headers=served.headers(),
        timeout=30,
    )
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    assert answer.history and answer.history[0].status_code == 307
    with zipfile.ZipFile(io.BytesIO(answer.content)) as opened:
        (member,) = [n for n in opened.namelist() if n.endswith("example.data")]
        return opened.read(member).decode()


def _private_body(served: Served, input_path: str) -> dict[str, Any]:
    body = hello_body(served, input_path, name="private", storage="PRIVATE")
    body["WorkflowOptions"] += [
        {"Name": "output_s3_path", "Value": "s3://results/hello"},
        {"Name": "output_s3_endpoint_url", "Value": served.s3_endpoint},
        {"Name": "output_s3_access_key", "Value": "out-access"},
        {"Name": "output_s3_secret_key", "Value": "out-secret-never-shown"},
    ]
    return body


def test_a_clean_restart_keeps_the_objects_the_links_and_the_queued_input(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    args = [str(HELLO_WORLD), "--concurrency", "1"]
    with serving(args, data) as served:
        s3 = served.s3_client()
        input_path = put_input(served)
        s3.put_object(
            Bucket="inputs",
            Key="notes/typed.json",
            Body=b'{"a": 1}',
            ContentType="application/json",
            Metadata={"owner": "alice"},
        )
        temporary = served.submit(hello_body(served, input_path, name="before"))
        private = served.submit(_private_body(served, input_path))
        (zipped,) = served.wait_for(temporary, {"completed", "failed"})
        (published,) = served.wait_for(private, {"completed", "failed"})
        assert (zipped["Status"], published["Status"]) == ("completed", "completed")
        link = zipped["DownloadLink"]
        assert _zip_text(served, temporary, zipped["Id"]) == SAMPLE.read_text().upper()

        # One item runs, the next waits behind it; its input is put just before the stop.
        sleeper = served.submit(odp_test_body("sleeper", sleep_time=30))
        served.wait_for(sleeper, {"in_progress"}, timeout=30)
        later_path = put_input(served, bucket="later", text="queued over a restart\n")
        queued = served.submit(hello_body(served, later_path, name="queued"))
        assert [i["Status"] for i in served.products(queued)] == ["queued"]
        before = _store(served)
        assert served.stop(signal.SIGTERM) == 0
    assert (data / "s3" / "index.sqlite3").is_file()

    with serving(args, data) as served:
        after = _store(served)
        assert {k: after.get(k) for k in before} == before  # every object, bytes and headers
        assert after[("inputs", "notes/typed.json")][1:] == ("application/json", {"owner": "alice"})
        assert any(b == "results" and k.startswith("hello/") for b, k in after), after.keys()

        (zipped_again,) = served.products(temporary)
        assert zipped_again["DownloadLink"] == link  # the same link answers again
        assert _zip_text(served, temporary, zipped["Id"]) == SAMPLE.read_text().upper()

        (stopped,) = served.products(sleeper)
        assert stopped["Status"] == "cancelled"
        assert stopped["StatusMessage"].startswith(
            "cancelled: hook-processor serve was stopped (SIGTERM) while the item ran"
        ), stopped
        (done,) = served.wait_for(queued, {"completed", "failed"}, timeout=90)
        assert done["Status"] == "completed", done
        assert _zip_text(served, queued, done["Id"]) == "QUEUED OVER A RESTART\n"
        assert served.stop(signal.SIGTERM) == 0


def test_after_a_sigkill_a_completed_items_input_and_output_are_back(tmp_path: Path) -> None:
    """An item is recorded completed only after the store was mirrored: its input (put before
    the order) and its zip survive a SIGKILL that comes right after."""
    data = tmp_path / "data"
    with serving([str(HELLO_WORLD)], data) as served:
        input_path = put_input(served, text="kept through a kill\n")
        order_id = served.submit(hello_body(served, input_path, name="killed after"))
        (done,) = served.wait_for(order_id, {"completed", "failed"})
        assert done["Status"] == "completed", done
        served.kill()  # SIGKILL: no clean stop, no last sync
    with serving([str(HELLO_WORLD)], data) as served:
        key = "dedl_hello_world/input_file_location/example.data"
        got = served.s3_client().get_object(Bucket="inputs", Key=key)
        assert got["Body"].read() == b"kept through a kill\n"
        assert _zip_text(served, order_id, done["Id"]) == "KEPT THROUGH A KILL\n"
        assert served.stop(signal.SIGTERM) == 0


def test_a_damaged_mirror_is_one_message_and_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "data" / "s3"
    state.mkdir(parents=True)
    (state / "index.sqlite3").write_bytes(b"not a database, " * 64)
    done = subprocess.run(
        [
            *hook_processor_command(),
            "serve",
            str(HELLO_WORLD),
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: --data-dir ") and str(state) in done.stderr, done.stderr
    assert "move that folder away" in done.stderr and "Traceback" not in done.stderr
