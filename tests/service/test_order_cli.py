"""``hook-processor order`` against ``hook-processor serve examples/hello_world``, both run as a
user runs them. Credentials come from the environment (or the prompt), never from argv, and are
in no output. ``sleep_time`` values are short (1-20 s), not the notebook's 120."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

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

PASSWORD = "order-cli-password-Tq93"
IN_SECRET = "in-secret-never-shown"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving([str(HELLO_WORLD), "--concurrency", "2"], tmp_path_factory.mktemp("s")) as s:
        yield s


def order(served: Served, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env(
        {
            "HOOK_SERVICE_URL": served.root,
            "HOOK_TOKEN_URL": served.token_url,
            "DESP_USERNAME": "carol",
            "DESP_PASSWORD": PASSWORD,
        }
    )
    done = subprocess.run(
        [*hook_processor_command(), "order", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
    )
    for secret in (PASSWORD, IN_SECRET):
        assert secret not in done.stdout + done.stderr
    return done


def options_file(served: Served, tmp_path: Path, input_path: str, storage: str) -> Path:
    body: dict[str, Any] = hello_body(served, input_path, name="cli", storage=storage)
    path = tmp_path / f"order-{storage}.json"
    path.write_text(json.dumps(body))
    return path


def test_submit_wait_completes_with_exit_0_and_download_writes_the_zip(
    served: Served, tmp_path: Path
) -> None:
    body = options_file(served, tmp_path, put_input(served, "cli-in"), "TEMPORARY")
    done = order(
        served, "submit", "--workflow", "dedl_hello_world", "--options-file", str(body),
        "--name", "cli upper", "--priority", "60", "--wait", "--interval", "0.2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    order_id = int(done.stdout.split()[0])
    # stderr is no terminal: one line per change of an item, the last one completed
    lines = done.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"order {order_id}  item ") for line in lines), lines
    assert "completed" in lines[-1] and "[Custom Hook]" in lines[-1]

    status = order(served, "status", str(order_id), "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["Status"] == "completed" and shown["Order"]["Priority"] == 60
    assert shown["Order"]["Name"] == "cli upper"

    products = json.loads(order(served, "products", str(order_id)).stdout)
    assert [p["Status"] for p in products] == ["completed"]

    target = tmp_path / "downloads"
    got = order(served, "download", str(order_id), "--dir", str(target))
    assert got.returncode == 0, got.stderr
    zip_path = target / f"output-dedl_hello_world-{order_id}-{products[0]['Id']}.zip"
    assert got.stdout.split("\t")[0] == str(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith("example.data")]
        assert archive.read(member).decode() == SAMPLE.read_text().upper()


def test_a_failing_order_exits_4_and_says_why(served: Served, tmp_path: Path) -> None:
    missing = "s3://no-such-bucket/dedl_hello_world/input_file_location"
    body = options_file(served, tmp_path, missing, "TEMPORARY")
    done = order(
        served, "submit", "--workflow", "dedl_hello_world", "--options-file", str(body), "--wait",
        "--interval", "0.2",
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert "failed" in done.stderr.splitlines()[-1]
    order_id = done.stdout.split()[0]
    status = order(served, "status", order_id)
    assert status.returncode == 4 and status.stdout.startswith(f"order {order_id} ")


def test_cancel_stops_the_order_and_status_exits_6(served: Served) -> None:
    submitted = order(
        served, "submit", "--workflow", "odp-test", "--option", "sleep_time=20",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    order_id = int(submitted.stdout.split()[0])
    served.wait_for(order_id, {"in_progress"}, timeout=30)
    cancelled = order(served, "cancel", str(order_id))
    assert cancelled.returncode == 0, cancelled.stderr
    status = order(served, "status", str(order_id), "--wait", "--interval", "0.2")
    assert status.returncode == 6, status.stdout + status.stderr
    assert f"order {order_id} " in status.stdout and "cancelled" in status.stdout
    again = order(served, "cancel", str(order_id))  # finished: the service's 409, exit 2
    assert again.returncode == 2 and again.stderr.startswith("Error: ")


def test_refused_orders_exit_2_with_the_service_message(served: Served) -> None:
    done = order(served, "submit", "--workflow", "no_such_flow")
    assert done.returncode == 2
    assert "dedl_hello_world" in done.stderr and "odp-test" in done.stderr  # the known ones
    bad = order(served, "submit", "--workflow", "odp-test", "--option", "sleep_time=soon")
    assert bad.returncode == 2 and "sleep_time" in bad.stderr, bad.stderr


def test_an_unreachable_service_exits_3(served: Served) -> None:
    done = subprocess.run(
        [*hook_processor_command(), "order", "status", "1", "--service",
         "http://127.0.0.1:9/odata/v1/", "--token-url", "http://127.0.0.1:9/token"],
        capture_output=True, text=True, timeout=60,
        env=child_env({"DESP_USERNAME": "u", "DESP_PASSWORD": PASSWORD}),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "cannot reach" in done.stderr and PASSWORD not in done.stderr


def test_credentials_are_never_options_and_the_prompt_hides_the_password(
    served: Served,
) -> None:
    from hook_processor.cli import main

    for flag in ("--password", "--username"):
        done = order(served, "status", "1", flag, "x")
        assert done.returncode == 2 and "No such option" in done.stderr
    env = {"HOOK_SERVICE_URL": served.root, "HOOK_TOKEN_URL": served.token_url}
    result = CliRunner().invoke(
        main,
        ["order", "submit", "--workflow", "odp-test", "--option", "sleep_time=1"],
        input=f"dave\n{PASSWORD}\n",
        env={**env, "DESP_USERNAME": None, "DESP_PASSWORD": None},  # type: ignore[dict-item]
    )
    assert result.exit_code == 0, result.output
    assert "Username: " in result.stderr and "Password: " in result.stderr
    assert PASSWORD not in result.output
    assert int(result.stdout.strip()) > 0


def test_a_token_from_hook_access_token_needs_no_token_url(served: Served) -> None:
    token = served.token()
    order_id = str(served.submit(odp_test_body("by token", sleep_time=1)))
    done = subprocess.run(
        [*hook_processor_command(), "order", "products", order_id, "--service", served.root],
        capture_output=True, text=True, timeout=60,
        env=child_env({"HOOK_ACCESS_TOKEN": token}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list) and token not in done.stdout + done.stderr
    refused = subprocess.run(
        [*hook_processor_command(), "order", "products", order_id, "--service", served.root],
        capture_output=True, text=True, timeout=60,
        env=child_env({"HOOK_ACCESS_TOKEN": "not-a-token"}),
    )  # fmt: skip
    assert refused.returncode == 2 and "401" in refused.stderr, refused.stderr


def test_one_item_per_identifier_each_shown_while_waiting(served: Served) -> None:
    done = order(
        served, "submit", "--workflow", "odp-test", "--identifier", "first", "--identifier",
        "second", "-o", "sleep_time=1", "--wait", "--interval", "0.2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    order_id = int(done.stdout.split()[0])
    lines = done.stderr.strip().splitlines()
    for ref in ("[first]", "[second]"):
        shown = [line for line in lines if ref in line]
        assert shown and "completed" in shown[-1], lines
    assert len(lines) == len(set(lines))  # a line per change, never the same state twice
    items = json.loads(order(served, "products", str(order_id)).stdout)
    assert [i["InputProductReference"] for i in items] == ["first", "second"]
