"""Tests of the fault-injecting proxy itself (tests/fault_proxy.py), against a real moto server."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    ResponseStreamingError,
)

try:
    from fault_proxy import Event, FaultProxy, Rule
except ImportError:  # tests/ became a package
    from tests.fault_proxy import Event, FaultProxy, Rule  # type: ignore[no-redef]

MiB = 1024 * 1024
BODY_READ_ERRORS = (
    ResponseStreamingError,
    IncompleteReadError,
    urllib3.exceptions.ProtocolError,
    http.client.IncompleteRead,
)
CONNECTION_ERRORS = (ConnectionClosedError, EndpointConnectionError)


def _payload(n: int, salt: bytes = b"") -> bytes:
    """n bytes that differ everywhere a flipped or dropped byte could hide."""
    block = hashlib.sha256(salt).digest() + bytes(range(256))
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture
def proxy(s3_server) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def client_for(s3_server, proxy):
    """Make boto3 clients pointed at the proxy; all are closed at teardown.

    botocore's ``max_attempts`` counts retries: a client makes ``max_attempts + 1`` attempts.
    """
    made = []

    def make(max_attempts: int = 3, **config):
        c = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            region_name="us-east-1",
            config=Config(
                retries={"mode": "standard", "max_attempts": max_attempts},
                s3={"addressing_style": "path"},
                **config,
            ),
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def obj(s3, bucket) -> tuple[str, str, bytes]:
    """An object put directly (not through the proxy): bucket, key, data."""
    data = _payload(256 * 1024, b"obj")
    s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=data)
    return bucket, "dir/obj.bin", data


# ------------------------------------------------------------------ lifecycle and API


def test_lifecycle_and_api(s3_server) -> None:
    proxy = FaultProxy(upstream=s3_server.endpoint_url)
    with pytest.raises(RuntimeError):
        _ = proxy.endpoint_url
    with proxy as p:
        assert p is proxy
        url = proxy.endpoint_url
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert proxy.start() is proxy  # idempotent
        rule = proxy.add_rule(Rule(fault="status"))
        assert proxy.rules == [rule] and rule.status == 503 and rule.code == "SlowDown"
        proxy.clear_rules()
        assert proxy.rules == [] and proxy.events == []
    proxy.stop()  # idempotent
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Rule(fault="explode")
    with pytest.raises(ValueError, match="rate"):
        Rule(fault="status", rate=1.5)
    with pytest.raises(ValueError, match="nth"):
        Rule(fault="status", nth=0)
    with pytest.raises(ValueError, match="http://"):
        FaultProxy(upstream="https://127.0.0.1:1")
    r = Rule(fault="status", status=500, methods="get", query="uploadId")
    assert r.code == "InternalError" and r.methods == {"GET"} and r.query == {"uploadId"}
    assert Rule(fault="reject_checksum_headers").status == 400


# ------------------------------------------------------------------ plain forwarding


def test_forwards_put_get_head_list(proxy, client_for, bucket) -> None:
    c = client_for()
    keys = {"a/plain.bin": _payload(100_000, b"1"), "a/sp ace+plus%25é.txt": b"", "b": b"x"}
    for key, data in keys.items():
        c.put_object(Bucket=bucket, Key=key, Body=data)
    for key, data in keys.items():
        got = c.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data
        assert c.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    listed = c.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(keys)
    got = c.get_object(Bucket=bucket, Key="a/plain.bin", Range="bytes=10-19")
    assert got["Body"].read() == keys["a/plain.bin"][10:20]
    assert proxy.events == []
    # boto3 keeps its connections alive through the proxy
    assert len(proxy.requests) >= 3 * len(keys) + 2
    assert proxy.connections_accepted < len(proxy.requests)


def test_forwards_multipart_upload(proxy, client_for, bucket) -> None:
    c = client_for()
    parts = [_payload(5 * MiB + 7, b"p1"), _payload(5 * MiB + 1, b"p2")]
    mpu = c.create_multipart_upload(Bucket=bucket, Key="mpu.bin")
    done = []
    for n, part in enumerate(parts, start=1):
        r = c.upload_part(
            Bucket=bucket, Key="mpu.bin", UploadId=mpu["UploadId"], PartNumber=n, Body=part
        )
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    c.complete_multipart_upload(
        Bucket=bucket, Key="mpu.bin", UploadId=mpu["UploadId"], MultipartUpload={"Parts": done}
    )
    assert c.get_object(Bucket=bucket, Key="mpu.bin")["Body"].read() == b"".join(parts)

    # The managed transfer: file-like bodies (Expect: 100-continue), parts in parallel.
    data = _payload(12 * MiB + 3, b"managed")
    cfg = TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
    )
    c.upload_fileobj(io.BytesIO(data), bucket, "managed.bin", Config=cfg)
    out = io.BytesIO()
    c.download_fileobj(bucket, "managed.bin", out, Config=cfg)
    assert out.getvalue() == data
    assert sum(1 for m, t in proxy.requests if m == "PUT" and "partNumber=" in t) == 2 + 3


def test_concurrent_connections(proxy, client_for, bucket) -> None:
    c = client_for(max_pool_connections=20)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            data = _payload(20_000 + i, str(i).encode())
            c.put_object(Bucket=bucket, Key=f"c/{i}", Body=data)
            assert c.get_object(Bucket=bucket, Key=f"c/{i}")["Body"].read() == data
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(proxy.requests) == 40


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Echo the request body back, chunked; report how the request body was framed."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            framing, body = "chunked", b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            framing = "length"
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Framing", framing)
        self.send_header("X-Host", self.headers["Host"])
        self.end_headers()
        for i in range(0, len(body), 1000):
            piece = body[i : i + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with FaultProxy(upstream=f"http://127.0.0.1:{server.server_address[1]}") as p:
            yield p
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_chunked_bodies_and_keep_alive(echo_proxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", echo_proxy.port, timeout=10)
    try:
        body = _payload(150_000, b"chunked")
        pieces = [body[i : i + 7_000] for i in range(0, len(body), 7_000)]
        conn.request("PUT", "/x?a=1", body=iter(pieces), encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("X-Framing") == "chunked"
        assert r.getheader("X-Host") == f"127.0.0.1:{echo_proxy.port}"
        assert r.read() == body
        conn.request("PUT", "/y", body=b"hello", headers={"Expect": "100-continue"})
        r = conn.getresponse()
        assert r.getheader("X-Framing") == "length" and r.read() == b"hello"
        # short_body on a chunked response withholds the terminating chunk
        echo_proxy.add_rule(Rule(fault="short_body", count=1))
        conn.request("PUT", "/z", body=b"abc")
        with pytest.raises(http.client.IncompleteRead):
            conn.getresponse().read()
    finally:
        conn.close()
    assert echo_proxy.connections_accepted == 1
    assert [m for m, _ in echo_proxy.requests] == ["PUT"] * 3


# ------------------------------------------------------------------ status faults


def test_slowdown_on_get_is_retried(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    proxy.add_rule(Rule(fault="status", status=503, code="SlowDown", methods={"GET"}, count=2))
    c = client_for(max_attempts=2)
    got = c.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["RetryAttempts"] == 2
    assert proxy.events == [Event("status", "GET", f"/{bucket}/{key}")] * 2
    c.head_object(Bucket=bucket, Key=key)  # HEAD does not match the rule


def test_slowdown_surfaces_when_retries_run_out(proxy, client_for, obj) -> None:
    bucket, key, _ = obj
    proxy.add_rule(Rule(fault="status", status=503, code="SlowDown", methods={"GET"}))
    c = client_for(max_attempts=1)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key=key)
    assert e.value.response["Error"]["Code"] == "SlowDown"
    assert e.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(proxy.events) == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (500, "InternalError"), (501, "NotImplemented"), (400, "BadDigest")],
)
def test_status_surfaces_without_retries(proxy, client_for, obj, status, code) -> None:
    bucket, key, _ = obj
    proxy.add_rule(Rule(fault="status", status=status, code=code, name="boom"))
    c = client_for(max_attempts=0)
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=bucket, Key=key)
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    with pytest.raises(ClientError) as e:
        c.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    # (after a 400 on HEAD, botocore's region redirector may probe the bucket: a 3rd event)
    assert proxy.events[:2] == [
        Event("boom", "GET", f"/{bucket}/{key}"),
        Event("boom", "HEAD", f"/{bucket}/{key}"),
    ]


def test_status_on_uploads_keeps_connections_usable(proxy, client_for, bucket) -> None:
    """A faulted PUT (body drained, or refused before an Expect: 100-continue body) retries fine."""
    proxy.add_rule(Rule(fault="status", status=500, methods="PUT", count=1, key_pattern="bytes"))
    proxy.add_rule(Rule(fault="status", status=503, methods="PUT", count=1, key_pattern="file"))
    c = client_for(max_attempts=3)
    r = c.put_object(Bucket=bucket, Key="bytes", Body=_payload(300_000))
    assert r["ResponseMetadata"]["RetryAttempts"] == 1
    c.upload_fileobj(io.BytesIO(_payload(300_000, b"f")), bucket, "file")
    assert c.get_object(Bucket=bucket, Key="file")["Body"].read() == _payload(300_000, b"f")
    assert len(proxy.events) == 2


def test_query_params_select_upload_part(proxy, client_for, bucket) -> None:
    proxy.add_rule(Rule(fault="status", status=500, methods={"PUT"}, query={"partNumber"}, nth=2))
    c = client_for(max_attempts=3)
    data = _payload(11 * MiB, b"q")
    cfg = TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=1
    )
    c.upload_fileobj(io.BytesIO(data), bucket, "parts.bin", Config=cfg)
    assert c.get_object(Bucket=bucket, Key="parts.bin")["Body"].read() == data
    assert proxy.events == [Event("status", "PUT", f"/{bucket}/parts.bin")]


def test_rate_seed_nth_count(proxy, bucket) -> None:
    def pattern(rule: Rule, n: int = 40) -> list[int]:
        proxy.clear_rules()
        proxy.add_rule(rule)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            statuses = []
            for _ in range(n):
                conn.request("GET", f"/{bucket}")
                r = conn.getresponse()
                r.read()
                statuses.append(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            return statuses
        finally:
            conn.close()

    first = pattern(Rule(fault="status", rate=0.3, seed=7))
    assert first == pattern(Rule(fault="status", rate=0.3, seed=7))
    assert 3 <= first.count(503) <= 25 and set(first) == {200, 503}
    assert pattern(Rule(fault="status", rate=0.3, seed=8)) != first
    assert pattern(Rule(fault="status", nth=3), 5) == [200, 200, 503, 200, 200]
    assert pattern(Rule(fault="status", count=2), 4) == [503, 503, 200, 200]
    assert pattern(Rule(fault="status", methods={"PUT"}), 2) == [200, 200]
    assert pattern(Rule(fault="status", key_pattern="^/nope"), 2) == [200, 200]
    assert pattern(Rule(fault="status", rate=0.0), 3) == [200, 200, 200]


# ------------------------------------------------------------------ body faults


def test_reset_after_breaks_the_body(proxy, client_for, obj, tmp_path) -> None:
    bucket, key, data = obj
    rule = proxy.add_rule(Rule(fault="reset_after", after_bytes=1000, methods="GET", count=1))
    c = client_for(max_attempts=0)
    got = c.get_object(Bucket=bucket, Key=key)
    assert got["ContentLength"] == len(data)
    with pytest.raises(BODY_READ_ERRORS):
        got["Body"].read()
    assert rule.fired == 1
    # s3transfer retries a broken stream on its own
    rule.count = 2
    c.download_file(bucket, key, str(tmp_path / "f"))
    assert (tmp_path / "f").read_bytes() == data
    assert len(proxy.events) == 2


def test_short_body_breaks_the_body(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    proxy.add_rule(Rule(fault="short_body", short_by=10, methods="GET", count=1))
    c = client_for(max_attempts=0)
    got = c.get_object(Bucket=bucket, Key=key)
    assert got["ContentLength"] == len(data)
    with pytest.raises(BODY_READ_ERRORS):
        got["Body"].read()
    assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_flip_byte(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    proxy.add_rule(Rule(fault="flip_byte", offset=70_000, methods="GET"))
    raw = client_for(response_checksum_validation="when_required")
    got = raw.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(got) == len(data)
    assert [i for i in range(len(data)) if got[i] != data[i]] == [70_000]
    # the default client asks for the stored CRC32 and catches the flip
    with pytest.raises(FlexibleChecksumError):
        client_for(max_attempts=0).get_object(Bucket=bucket, Key=key)["Body"].read()


def test_flip_byte_negative_offset(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    proxy.add_rule(Rule(fault="flip_byte", offset=-1, methods="GET"))
    got = client_for(response_checksum_validation="when_required").get_object(
        Bucket=bucket, Key=key
    )
    body = got["Body"].read()
    assert body[:-1] == data[:-1] and body[-1] == data[-1] ^ 0xFF


# ------------------------------------------------------------------ other faults


def test_reject_checksum_headers(proxy, client_for, s3, bucket) -> None:
    proxy.add_rule(Rule(fault="reject_checksum_headers"))
    with pytest.raises(ClientError) as e:
        client_for().put_object(Bucket=bucket, Key="k", Body=b"data")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    assert [ev.rule for ev in proxy.events] == ["reject_checksum_headers"]

    plain = client_for(request_checksum_calculation="when_required")
    plain.put_object(Bucket=bucket, Key="k", Body=b"data")
    plain.upload_fileobj(io.BytesIO(b"more"), bucket, "k2")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert s3.get_object(Bucket=bucket, Key="k2")["Body"].read() == b"more"
    # a default GET sends x-amz-checksum-mode, which is not a checksum
    assert client_for().get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert len(proxy.events) == 1


def test_latency(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    c = client_for()
    c.head_object(Bucket=bucket, Key=key)  # warm the connection pool
    proxy.add_rule(Rule(fault="latency", delay=0.4, methods="GET"))
    began = time.monotonic()
    assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert time.monotonic() - began >= 0.4
    assert [ev.rule for ev in proxy.events] == ["latency"]


def test_down(proxy, client_for, obj) -> None:
    bucket, key, data = obj
    proxy.add_rule(Rule(fault="down"))
    c = client_for(max_attempts=0)
    with pytest.raises(CONNECTION_ERRORS):
        c.get_object(Bucket=bucket, Key=key)
    proxy.clear_rules()
    proxy.add_rule(Rule(fault="down", count=1))
    retried = client_for(max_attempts=1).get_object(Bucket=bucket, Key=key)
    assert retried["Body"].read() == data and retried["ResponseMetadata"]["RetryAttempts"] == 1


def test_stopped_proxy_refuses(s3_server, bucket) -> None:
    with FaultProxy(upstream=s3_server.endpoint_url) as p:
        url = p.endpoint_url
    c = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 0}),
    )
    try:
        with pytest.raises(EndpointConnectionError):
            c.head_bucket(Bucket=bucket)
    finally:
        c.close()
