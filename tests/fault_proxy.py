"""A small fault-injecting HTTP/1.1 proxy for reliability tests (stdlib only).

It sits between a client (boto3) and a real S3 server (moto on 127.0.0.1): point the client's
``endpoint_url`` at ``proxy.endpoint_url``. Requests are forwarded byte for byte (request line,
headers -- including ``Host`` as sent, which SigV4 signs -- and the body, framed by
``Content-Length`` or ``Transfer-Encoding: chunked``); responses are streamed back. Rules inject
faults on the requests they match::

    with FaultProxy(upstream=s3_server.endpoint_url) as proxy:
        proxy.add_rule(Rule(fault="status", status=503, code="SlowDown", methods={"GET"}, count=2))
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, ...)
        ...
        assert [e.rule for e in proxy.events] == ["status", "status"]

Faults (``Rule.fault``):

``status``
    answer with an S3-style XML error (``status``, ``code``, ``message``) without forwarding.
``reset_after``
    forward, send the response head and the first ``after_bytes`` bytes of the body, then reset
    the connection (``SO_LINGER`` 0: the client sees a TCP RST).
``short_body``
    forward, send the head with the real ``Content-Length`` but ``short_by`` fewer body bytes,
    then close the connection cleanly (FIN).
``flip_byte``
    forward, XOR one body byte at ``offset`` (negative: from the end) with ``0xFF``; length kept.
``latency``
    wait ``delay`` seconds, then go on (latency rules stack with each other and with one other
    fault).
``reject_checksum_headers``
    a request carrying flexible-checksum headers (``x-amz-checksum-<algorithm>``,
    ``x-amz-sdk-checksum-algorithm``, ``x-amz-trailer: x-amz-checksum-...``) is answered
    400 InvalidArgument (or ``status``/``code``), like a store without flexible checksums;
    ``x-amz-checksum-mode`` (a GET asking for the stored checksum) does not count.
``down``
    close the connection abruptly (RST) after reading the request head, without a response.
``flip_request_byte``
    forward the request with one byte of its body at ``offset`` XORed with ``0xFF`` (the
    upload the server receives is corrupted; the client's checksums are of the right bytes).
``sse_kms``
    forward, and answer as a store that keeps the object with SSE-KMS: the response head gets
    ``x-amz-server-side-encryption: aws:kms``, and ``etag_from`` (the object's MD5, 32 hex
    digits) is replaced by ``etag_to`` (as long) in the head and in each body piece (a listing's
    ``<ETag>``; an occurrence split between two pieces is missed), and back in the request head
    (an ``If-Match``; the upstream must not check signatures, as moto does not): such a store's
    ETag is not the MD5 of the object (moto keeps the MD5).

Every forwarded request is recorded in ``proxy.sent`` with its headers and the length, MD5,
SHA-256 and CRC32 of the body the client sent (before any flip): what the client claimed in
its checksum headers can be compared with what it really sent.

A rule matches on HTTP method(s), a regex searched in the percent-decoded path (``/bucket/key``
with path-style addressing) and the presence of query parameters (e.g. ``uploadId``,
``partNumber``). A matching rule fires only on its ``nth`` match (if set), at most ``count`` times
(if set), and then with probability ``rate`` drawn from its own ``random.Random(seed)``. The first
rule (in insertion order) that fires decides the fault, except that ``latency`` rules add up and
evaluation continues after them. Every fired rule is recorded in ``proxy.events``.

Connection handling: client connections are kept alive (HTTP/1.1) whenever the framing allows,
whatever the upstream says; each request uses a fresh upstream connection, so the hop-by-hop
``Connection`` response header is the proxy's own. Everything else is passed through unchanged.

A client that sends ``Expect: 100-continue`` gets the proxy's own ``100 Continue`` (even for an
empty body, as moto/werkzeug do) before its body is forwarded; upstream's interim 100 is dropped.

Limitations: plain ``http://`` upstream only; no upstream keep-alive; ``short_body`` needs a
``Content-Length`` response (for a chunked response it withholds the terminating chunk instead);
a rule's random draws are reproducible only if requests reach it in a reproducible order (not
from several threads at once); faulted and forwarded requests are decided on the request head,
before the body is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = ["FAULTS", "Event", "FaultProxy", "Rule", "Sent"]

log = logging.getLogger(__name__)

FAULTS = frozenset(
    {
        "status",
        "reset_after",
        "short_body",
        "flip_byte",
        "latency",
        "reject_checksum_headers",
        "down",
        "flip_request_byte",
        "sse_kms",
    }
)

_DEFAULT_CODES = {
    400: "InvalidArgument",
    403: "AccessDenied",
    404: "NoSuchKey",
    409: "OperationAborted",
    500: "InternalError",
    501: "NotImplemented",
    503: "SlowDown",
}
_DEFAULT_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "NotImplemented": "A header you provided implies functionality that is not implemented.",
}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_LINE = 64 * 1024
_MAX_HEADERS = 200
_CHUNK = 64 * 1024


class Event(NamedTuple):
    """One fault the proxy applied: the rule's name (default: its fault), method and path."""

    rule: str
    method: str
    path: str


class Sent(NamedTuple):
    """One forwarded request: its head and digests of the body the client sent."""

    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    length: int
    md5: str  # hex
    sha256: str  # hex
    crc32: int

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(k for k, _ in parse_qsl(urlsplit(self.target).query, True))


@dataclass(eq=False)
class Rule:
    """One fault and the requests it applies to (see the module docstring)."""

    fault: str
    # --- matching
    methods: Collection[str] | str | None = None
    key_pattern: str | None = None
    query: Collection[str] | str | None = None
    # --- firing
    rate: float = 1.0
    count: int | None = None
    nth: int | None = None
    seed: int | None = None
    name: str | None = None
    # --- fault parameters
    status: int | None = None  # status, reject_checksum_headers
    code: str | None = None
    message: str | None = None
    delay: float = 0.0  # latency
    after_bytes: int = 0  # reset_after
    short_by: int = 1  # short_body
    offset: int = 0  # flip_byte, flip_request_byte
    etag_from: str = ""  # sse_kms
    etag_to: str = ""

    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(FAULTS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {self.rate}")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"nth counts from 1, got {self.nth}")
        if self.fault == "sse_kms" and (
            len(self.etag_from) != len(self.etag_to) or not self.etag_from
        ):
            raise ValueError("sse_kms: etag_from and etag_to must be given, of one length")
        if self.delay < 0 or self.after_bytes < 0 or self.short_by < 0:
            raise ValueError("delay, after_bytes and short_by must be >= 0")
        if isinstance(self.methods, str):
            self.methods = {self.methods}
        if self.methods is not None:
            self.methods = frozenset(m.upper() for m in self.methods)
        if isinstance(self.query, str):
            self.query = {self.query}
        if self.query is not None:
            self.query = frozenset(self.query)
        self._regex = re.compile(self.key_pattern) if self.key_pattern is not None else None
        if self.fault == "reject_checksum_headers":
            self.status = self.status or 400
        elif self.fault == "status":
            self.status = self.status or 503
        if self.status is not None:
            self.code = self.code or _DEFAULT_CODES.get(self.status, "InternalError")
            self.message = self.message or _DEFAULT_MESSAGES.get(self.code, "Injected fault.")
        self._rng = random.Random(self.seed)

    @property
    def label(self) -> str:
        return self.name or self.fault

    def _matches(self, req: _Request) -> bool:
        if self.methods is not None and req.method not in self.methods:
            return False
        if self._regex is not None and not self._regex.search(req.path):
            return False
        if self.query is not None and not req.query_names.issuperset(self.query):
            return False
        return not (self.fault == "reject_checksum_headers" and not _has_checksum_headers(req))

    def _fires(self, req: _Request) -> bool:
        """Count a match and decide; the caller holds the proxy's lock."""
        if not self._matches(req):
            return False
        self.matched += 1
        if self.nth is not None and self.matched != self.nth:
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        if self.rate < 1.0 and self._rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


def _has_checksum_headers(req: _Request) -> bool:
    for name, value in req.headers:
        n = name.lower()
        if n.startswith("x-amz-checksum-") and n != "x-amz-checksum-mode":
            return True
        if n == "x-amz-sdk-checksum-algorithm":
            return True
        if n == "x-amz-trailer" and "checksum" in value.lower():
            return True
    return False


# --------------------------------------------------------------------------- HTTP plumbing


class _BadMessage(Exception):
    pass


class _Reader:
    """Buffered reads from a socket (no makefile: nothing extra to close)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
        if not data:
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > _MAX_LINE:
                raise _BadMessage("line too long")
            start = len(self.buf)
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read_head(self) -> bytes | None:
        """The raw head up to and including the blank line; None on EOF before any byte."""
        lines: list[bytes] = []
        while True:
            line = self.readline()
            if not line:
                if lines:
                    raise _BadMessage("EOF inside the message head")
                return None
            if not lines and line in (b"\r\n", b"\n"):
                continue  # tolerate stray CRLF between messages (RFC 9112 2.2)
            lines.append(line)
            if not line.endswith(b"\n"):
                raise _BadMessage("EOF inside the message head")
            if line in (b"\r\n", b"\n"):
                return b"".join(lines)
            if len(lines) > _MAX_HEADERS:
                raise _BadMessage("too many header lines")

    def read_some(self, n: int) -> bytes:
        """Up to n bytes (b"" on EOF)."""
        if not self.buf and not self._fill():
            return b""
        piece = bytes(self.buf[:n])
        del self.buf[:n]
        return piece


def _parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = raw.decode("latin-1").split("\n")
    start = lines[0].rstrip("\r")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadMessage(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return start, headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    found = None
    for n, v in headers:
        if n.lower() == name:
            found = v if found is None else f"{found}, {v}"
    return found


def _tokens(headers: list[tuple[str, str]], name: str) -> set[str]:
    value = _header(headers, name) or ""
    return {t.strip().lower() for t in value.split(",") if t.strip()}


@dataclass
class _Framing:
    kind: str  # "length" | "chunked" | "close"
    length: int = 0


def _framing(
    headers: list[tuple[str, str]], *, method: str | None = None, status: int | None = None
) -> _Framing:
    """How the body of a request (status None) or of a response to `method` is delimited."""
    if status is not None and (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
        return _Framing("length", 0)
    te = _header(headers, "transfer-encoding")
    if te is not None:
        if te.lower().split(",")[-1].strip() == "chunked":
            return _Framing("chunked")
        if status is None:
            raise _BadMessage(f"unsupported request Transfer-Encoding {te!r}")
        return _Framing("close")
    cl = _header(headers, "content-length")
    if cl is not None:
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1 or not values.pop().isdigit():
            raise _BadMessage(f"bad Content-Length {cl!r}")
        return _Framing("length", int(cl.split(",")[0]))
    return _Framing("length", 0) if status is None else _Framing("close")


def _iter_body(reader: _Reader, framing: _Framing) -> Iterator[tuple[str, bytes]]:
    """The raw body as (kind, bytes), kind "data", "frame" or "end" (last chunk and trailer).

    Chunk framing is passed through verbatim, so a forwarded chunked body is unchanged.
    """
    if framing.kind == "length":
        left = framing.length
        while left:
            piece = reader.read_some(min(left, _CHUNK))
            if not piece:
                raise _BadMessage(f"EOF with {left} body bytes missing")
            left -= len(piece)
            yield "data", piece
    elif framing.kind == "close":
        while piece := reader.read_some(_CHUNK):
            yield "data", piece
    else:
        while True:
            line = reader.readline()
            if not line.endswith(b"\n"):
                raise _BadMessage("EOF in chunk size line")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadMessage(f"bad chunk size line {line!r}") from None
            if size == 0:
                trailer = [line]
                while True:
                    t = reader.readline()
                    if not t.endswith(b"\n"):
                        raise _BadMessage("EOF in chunked trailer")
                    trailer.append(t)
                    if t in (b"\r\n", b"\n"):
                        break
                yield "end", b"".join(trailer)
                return
            yield "frame", line
            left = size
            while left:
                piece = reader.read_some(min(left, _CHUNK))
                if not piece:
                    raise _BadMessage("EOF inside a chunk")
                left -= len(piece)
                yield "data", piece
            crlf = reader.readline()
            if crlf not in (b"\r\n", b"\n"):
                raise _BadMessage("missing CRLF after chunk data")
            yield "frame", crlf


def _with_connection(raw: bytes, start: str, headers: list[tuple[str, str]], keep: bool) -> bytes:
    """The response head with our own hop-by-hop Connection header for the client side.

    The upstream connection is used for one request only, so whether the client's connection
    stays open is the proxy's decision: an upstream "Connection: close" is not passed on.
    """
    if ("close" in _tokens(headers, "connection")) == (not keep):
        return raw
    kept = [(n, v) for n, v in headers if n.lower() not in ("connection", "keep-alive")]
    kept.append(("Connection", "keep-alive" if keep else "close"))
    lines = [start, *(f"{n}: {v}" for n, v in kept), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class _Request:
    raw_head: bytes
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    path: str  # percent-decoded, without the query
    query_names: frozenset[str]


def _parse_request(raw: bytes) -> _Request:
    start, headers = _parse_head(raw)
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadMessage(f"bad request line {start!r}")
    method, target, version = parts
    if "://" in target:  # absolute-form: keep only the origin-form part for matching
        s = urlsplit(target)
        path, query = s.path or "/", s.query
    else:
        path, _, query = target.partition("?")
    names = frozenset(k for k, _ in parse_qsl(query, keep_blank_values=True))
    return _Request(raw, method.upper(), target, version, headers, unquote(path), names)


# --------------------------------------------------------------------------- the proxy


class FaultProxy:
    """A threaded fault-injecting HTTP proxy in front of one plain-HTTP upstream."""

    def __init__(
        self,
        upstream: str,
        rules: Collection[Rule] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 60.0,
    ) -> None:
        u = urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream
        self._upstream_addr = (u.hostname, u.port or 80)
        self._bind = (host, port)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._rules: list[Rule] = list(rules)
        self._events: list[Event] = []
        self._requests: list[tuple[str, str]] = []
        self._sent: list[Sent] = []
        self._accepted = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients: dict[socket.socket, threading.Thread] = {}
        self.address: tuple[str, int] | None = None

    # ---- lifecycle

    def start(self) -> FaultProxy:
        if self._listener is not None:
            return self
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self._bind)
            listener.listen(128)
            listener.settimeout(0.05)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"FaultProxy-accept-{self.address[1]}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every client connection and join all threads."""
        if self._listener is None:
            return
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join()
            self._accept_thread = None
        self._listener.close()
        self._listener = None
        with self._lock:
            clients = dict(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in clients.values():
            thread.join(timeout=self.timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self.address is None:
            raise RuntimeError("the proxy is not started")
        return self.address[1]

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._bind[0]}:{self.port}"

    # ---- rules and records

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules.remove(rule)

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @property
    def events(self) -> list[Event]:
        """The faults applied so far (a copy)."""
        with self._lock:
            return list(self._events)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, request target) of every request received, faulted or not (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[Sent]:
        """Every forwarded request with its headers and body digests (a copy)."""
        with self._lock:
            return list(self._sent)

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._accepted

    def clear_events(self) -> None:
        with self._lock:
            self._events.clear()
            self._requests.clear()
            self._sent.clear()

    # ---- serving

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("FaultProxy: accept failed")
                time.sleep(0.05)
                continue
            try:
                sock.settimeout(self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the client is already gone
                sock.close()
                continue
            thread = threading.Thread(
                target=self._serve_client, args=(sock,), name="FaultProxy-conn", daemon=True
            )
            with self._lock:
                self._accepted += 1
                self._clients[sock] = thread
            thread.start()

    def _serve_client(self, sock: socket.socket) -> None:
        reader = _Reader(sock)
        try:
            while not self._stopping.is_set():
                try:
                    raw = reader.read_head()
                except (OSError, _BadMessage):
                    break
                if raw is None:
                    break
                if not self._handle(sock, reader, raw):
                    break
        except Exception:  # never let a handler thread die noisily (pytest turns it into an error)
            log.debug("FaultProxy: connection handler failed", exc_info=True)
        finally:
            sock.close()
            with self._lock:
                self._clients.pop(sock, None)

    def _decide(self, req: _Request) -> tuple[list[Rule], Rule | None]:
        delays: list[Rule] = []
        with self._lock:
            self._requests.append((req.method, req.target))
            for rule in self._rules:
                if rule._fires(req):
                    self._events.append(Event(rule.label, req.method, req.path))
                    if rule.fault == "latency":
                        delays.append(rule)
                        continue
                    return delays, rule
        return delays, None

    def _handle(self, sock: socket.socket, reader: _Reader, raw: bytes) -> bool:
        """Serve one request; True to keep the client connection open."""
        try:
            req = _parse_request(raw)
            body = _framing(req.headers)
        except _BadMessage as e:
            self._send_error(sock, req=None, status=400, code="BadRequest", message=str(e))
            return False
        delays, rule = self._decide(req)
        for d in delays:
            if self._stopping.wait(d.delay):
                return False
        conn = _tokens(req.headers, "connection")
        keep = "close" not in conn and (req.version != "HTTP/1.0" or "keep-alive" in conn)
        expects = "100-continue" in _tokens(req.headers, "expect")

        if rule is not None and rule.fault == "down":
            _reset(sock)
            return False
        if rule is not None and rule.fault in ("status", "reject_checksum_headers"):
            if expects:
                # The client waits for our verdict before sending a body. Close after answering:
                # botocore (1.43) reuses a stale status line for the next Expect request on a
                # connection whose previous Expect request got a final answer instead of a 100.
                keep = False
            else:
                for _ in _iter_body(reader, body):  # drain the body, to keep the connection usable
                    pass
            assert rule.status is not None and rule.code is not None
            self._send_error(sock, req, rule.status, rule.code, rule.message or "", keep=keep)
            return keep
        return self._forward(sock, reader, req, body, rule, keep=keep, expects=expects)

    def _send_error(
        self,
        sock: socket.socket,
        req: _Request | None,
        status: int,
        code: str,
        message: str,
        *,
        keep: bool = False,
    ) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        resource = escape(req.path) if req is not None else ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId>"
            f"<HostId>fault-proxy</HostId></Error>"
        ).encode()
        payload = b"" if req is not None and req.method == "HEAD" else body
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/xml\r\n"
            f"Content-Length: {len(body) if payload else 0}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
            f"Server: FaultProxy\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            sock.sendall(head + payload)

    def _forward(
        self,
        sock: socket.socket,
        reader: _Reader,
        req: _Request,
        body: _Framing,
        rule: Rule | None,
        *,
        keep: bool,
        expects: bool,
    ) -> bool:
        try:
            up = socket.create_connection(self._upstream_addr, timeout=self.timeout)
        except OSError as e:
            log.debug("FaultProxy: upstream unreachable: %s", e)
            self._send_error(sock, req, 502, "BadGateway", f"upstream unreachable: {e}")
            return False
        try:
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if expects:
                # Answer the expectation ourselves (upstream's own 100 Continue is dropped below),
                # even for an empty body, as moto/werkzeug do: botocore (1.43) misreads the next
                # response on a kept-alive connection after an Expect request answered without 100.
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            raw_head = req.raw_head
            if rule is not None and rule.fault == "sse_kms":  # If-Match names the ETag we showed
                raw_head = raw_head.replace(rule.etag_to.encode(), rule.etag_from.encode())
            up.sendall(raw_head)
            md5, sha256, crc, length = hashlib.md5(), hashlib.sha256(), 0, 0
            flip = rule.offset if rule is not None and rule.fault == "flip_request_byte" else None
            try:
                for kind, piece in _iter_body(reader, body):
                    if kind == "data":
                        md5.update(piece)
                        sha256.update(piece)
                        crc = zlib.crc32(piece, crc)
                        if flip is not None and length <= flip < length + len(piece):
                            b = bytearray(piece)
                            b[flip - length] ^= 0xFF
                            piece = bytes(b)
                        length += len(piece)
                    up.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                # upstream stopped reading: the rest of the body is lost; relay its answer anyway
                keep = False
            heads = {k.lower(): v for k, v in req.headers}
            sent = Sent(
                req.method, req.target, heads, length, md5.hexdigest(), sha256.hexdigest(), crc
            )
            with self._lock:
                self._sent.append(sent)

            up_reader = _Reader(up)
            while True:
                raw = up_reader.read_head()
                if raw is None:
                    _reset(sock)  # upstream vanished without answering: so do we
                    return False
                start, headers = _parse_head(raw)
                try:
                    status = int(start.split(" ", 2)[1])
                except (IndexError, ValueError):
                    raise _BadMessage(f"bad status line {start!r}") from None
                if 100 <= status < 200 and status != 101:
                    continue  # interim response
                break
            framing = _framing(headers, method=req.method, status=status)
            if framing.kind == "close":
                keep = False
            head = _with_connection(raw, start, headers, keep)
            if rule is not None and rule.fault == "sse_kms":
                head = head.replace(rule.etag_from.encode(), rule.etag_to.encode())
                head = head[:-2] + b"x-amz-server-side-encryption: aws:kms\r\n\r\n"
            sock.sendall(head)
            return self._relay_body(sock, up_reader, framing, rule) and keep
        finally:
            up.close()

    def _relay_body(
        self, sock: socket.socket, up_reader: _Reader, framing: _Framing, rule: Rule | None
    ) -> bool:
        """Stream the response body to the client, applying `rule`; False if the socket is done."""
        fault = rule.fault if rule is not None else None
        cut: int | None = None  # payload bytes to send before cutting the connection
        flip: int | None = None
        if fault == "reset_after":
            assert rule is not None
            cut = rule.after_bytes
        elif fault == "short_body" and framing.kind == "length":
            assert rule is not None
            cut = max(framing.length - rule.short_by, 0)
        elif fault == "flip_byte":
            assert rule is not None
            flip = rule.offset
            if flip < 0:
                flip = framing.length + flip if framing.kind == "length" else None
        pos = 0
        for kind, piece in _iter_body(up_reader, framing):
            if kind == "data":
                if fault == "sse_kms":
                    assert rule is not None
                    piece = piece.replace(rule.etag_from.encode(), rule.etag_to.encode())
                if flip is not None and pos <= flip < pos + len(piece):
                    b = bytearray(piece)
                    b[flip - pos] ^= 0xFF
                    piece = bytes(b)
                if cut is not None and pos + len(piece) >= cut:
                    sock.sendall(piece[: cut - pos])
                    break
                pos += len(piece)
            elif fault == "short_body" and kind == "end":
                break  # chunked: withhold the terminating chunk
            sock.sendall(piece)
        else:
            if fault not in ("reset_after", "short_body"):
                return True
        if fault == "reset_after":
            time.sleep(0.05)  # let the client take in the head before the RST discards it
            _reset(sock)
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return False
