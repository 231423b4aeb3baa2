"""A refused connection or an unknown host: said in those words, after a few quick attempts.

urllib3's NewConnectionError subclasses its ConnectTimeoutError: a refusal used to read "Connect
timeout" and to be retried with the standard backoff (about 10 s) like a slow network. Attempts
are counted at urllib3's connection pool, which both the lean path and botocore go through.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest
import urllib3
from exec_helpers import HELLO_WORLD, exec_command, private_env, put_tree
from pydantic import SecretStr

from hook_processor import _harness_io, runtime, storage
from hook_processor.errors import ExitCode, StagingError
from hook_processor.options import OptionSources

UNKNOWN_HOST = "nonexistent.invalid"  # never looked up for real: getaddrinfo is stubbed below


def closed_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def attempts(monkeypatch):
    """Every request urllib3 tries, as (host, port), from the lean path and from botocore."""
    seen: list[tuple[str, int]] = []
    original = urllib3.HTTPConnectionPool.urlopen

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((self.host, self.port))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", counting)
    return seen


@pytest.fixture
def no_dns(monkeypatch):
    """UNKNOWN_HOST does not resolve, without asking any resolver (nothing leaves the machine)."""
    original = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == UNKNOWN_HOST:
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_exec_against_a_refused_port_says_refused_exit_3(s3_server, tmp_path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = private_env(s3_server, "inb", "out", tmp_path / "work", SOURCE_S3_ENDPOINT_URL=endpoint)
    child = exec_command(env, "--project", str(HELLO_WORLD))  # default HOOK_S3_MAX_ATTEMPTS: 5
    _, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    message = json.loads((tmp_path / "work" / "result.json").read_text())["StatusMessage"]
    assert message == (
        f"could not list s3://inb/dedl_hello_world/input_file_location at {endpoint}: "
        "connection refused; check the endpoint URL and that the S3 server is running"
    )
    assert f"ERROR   {message}" in err
    assert "timeout" not in err.lower()


def test_refused_stage_in_is_tried_three_times_not_five(s3_server, tmp_path, attempts) -> None:
    port = closed_port()
    env = private_env(
        s3_server,
        "inb",
        "out",
        tmp_path / "work",
        SOURCE_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.STAGING_FAILED
    assert "connection refused" in result.status_message
    assert attempts.count(("127.0.0.1", port)) == 3  # not HOOK_S3_MAX_ATTEMPTS (5)

    attempts.clear()
    one = {**env, "HOOK_S3_MAX_ATTEMPTS": "1", "HOOK_WORK_DIR": str(tmp_path / "work1")}
    assert runtime.run(OptionSources(env=one), project_dir=HELLO_WORLD).exit_code == 3
    assert attempts.count(("127.0.0.1", port)) == 1  # fewer attempts asked: fewer made


def test_refused_publication_through_botocore_says_refused_exit_5(
    s3_server, s3, tmp_path, attempts
) -> None:
    in_bucket = f"t-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=in_bucket)
    put_tree(s3, in_bucket, "dedl_hello_world/input_file_location/", {"example.data": b"x"})
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = private_env(
        s3_server, in_bucket, "out", tmp_path / "work", OUTPUT_S3_ENDPOINT_URL=endpoint
    )
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.PUBLISH_FAILED
    assert result.status_message == (
        f"could not check the output s3://out/results/run1 at {endpoint}: "
        "connection refused; check the endpoint URL and that the S3 server is running"
    )
    assert attempts.count(("127.0.0.1", port)) == 3  # the preflight's HeadBucket, retried less too


def test_unknown_host_is_named_as_a_dns_failure(s3_server, tmp_path, no_dns, attempts) -> None:
    endpoint = f"http://{UNKNOWN_HOST}:9000"
    env = private_env(s3_server, "inb", "out", tmp_path / "work", SOURCE_S3_ENDPOINT_URL=endpoint)
    result = runtime.run(OptionSources(env=env), project_dir=HELLO_WORLD)
    assert result.exit_code == ExitCode.STAGING_FAILED
    assert result.status_message == (
        f"could not list s3://inb/dedl_hello_world/input_file_location at {endpoint}: "
        "its host name does not resolve (DNS lookup failed); check the endpoint URL"
    )
    assert no_dns == [UNKNOWN_HOST] * 3
    assert attempts.count((UNKNOWN_HOST, 9000)) == 3


def test_harness_upload_to_a_refused_port_says_refused(tmp_path, attempts) -> None:
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    client = storage.make_client(
        storage.S3Target(endpoint, SecretStr("a"), SecretStr("b")), storage.TransferSettings()
    )
    try:
        with pytest.raises(StagingError) as caught:
            _harness_io.upload_inputs(
                client.boto, "in", "x/", [("example.data", b"data")], endpoint
            )
    finally:
        client.close()
    assert str(caught.value) == (
        f"could not upload the input to s3://in/x/example.data on {endpoint}: "
        "connection refused; check the endpoint URL and that the S3 server is running"
    )
    assert attempts.count(("127.0.0.1", port)) == 3
