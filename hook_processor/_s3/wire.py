"""What the lean engine reads off the wire, in botocore's terms: bodies, checksums, errors.

A GET body whose stored checksum is validated as it is read, S3's error XML, and urllib3's
transport errors turned into botocore's exception types, so that callers handle the lean and the
boto3 engine alike (lean.py).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import urllib3
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

# Response checksums we validate, in botocore's order of preference (stdlib only).
RESPONSE_CHECKSUMS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("crc32", lambda: Crc32()),
    ("sha1", lambda: hashlib.sha1(usedforsecurity=False)),
    ("sha256", lambda: hashlib.sha256()),
)


class Crc32:
    """zlib.crc32 behind hashlib's update()/digest() interface."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def crc32_b64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


class GetBody:
    """The GET body: ``read(n)`` / ``close()``, transport errors as botocore's, checksum checked."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        endpoint: str,
        expected: tuple[str, str, Any] | None,
    ) -> None:
        self._response = response
        self._endpoint = endpoint
        self._expected = expected
        self._done = False

    def read(self, amt: int | None = None) -> bytes:
        try:
            data = self._response.read(amt)
        except urllib3.exceptions.ReadTimeoutError as err:
            raise ReadTimeoutError(endpoint_url=self._endpoint, error=err) from err
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ResponseStreamingError(error=err) from err
        if self._expected is not None:
            if data:
                self._expected[2].update(data)
            else:
                name, want, digest = self._expected
                got = base64.b64encode(digest.digest()).decode()
                self._expected = None
                if got != want:
                    raise FlexibleChecksumError(
                        error_msg=f"Expected checksum {want} did not match calculated "
                        f"checksum: {got}"
                    )
        if not data:
            self._done = True
        return data

    def close(self) -> None:
        if self._done:
            self._response.release_conn()  # fully read: the connection goes back to the pool
        else:
            self._response.close()  # abandoned mid-body: never reuse that connection
            self._response.release_conn()


def expected_checksum(response: urllib3.BaseHTTPResponse) -> tuple[str, str, Any] | None:
    for name, make in RESPONSE_CHECKSUMS:
        value = response.headers.get(f"x-amz-checksum-{name}")
        if value and "-" not in value:
            return name, value, make()
    return None


def metadata(response: urllib3.BaseHTTPResponse, retries: int) -> dict[str, Any]:
    return {
        "HTTPStatusCode": response.status,
        "HTTPHeaders": {k.lower(): v for k, v in response.headers.items()},
        "RetryAttempts": retries,
    }


def read_error_body(response: urllib3.BaseHTTPResponse) -> bytes:
    try:
        data = response.read(64 * 1024)
        response.drain_conn()
        return data
    except (urllib3.exceptions.HTTPError, OSError):
        response.close()
        return b""
    finally:
        response.release_conn()


def parse_error(payload: bytes, status: int) -> tuple[str, str]:
    code, message = str(status), ""
    if payload:
        try:
            root = ElementTree.fromstring(payload)
        except ElementTree.ParseError:
            return code, message
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "Code" and element.text:
                code = element.text
            elif tag == "Message" and element.text:
                message = element.text
    if code == str(status) and not message:
        message = {404: "Not Found", 412: "Precondition Failed", 403: "Forbidden"}.get(status, "")
    return code, message


def is_timeout(err: BaseException) -> bool:
    return isinstance(err, urllib3.exceptions.TimeoutError) and not isinstance(
        err, urllib3.exceptions.NewConnectionError
    )


def connection_error(err: BaseException, endpoint: str) -> Exception:
    # NewConnectionError (refused, unknown host, no route) subclasses ConnectTimeoutError in
    # urllib3: test it first, as botocore's own HTTP session does, or a refusal reads "timeout".
    if isinstance(err, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        return EndpointConnectionError(endpoint_url=endpoint, error=err)
    if isinstance(err, urllib3.exceptions.SSLError):  # botocore's type for it, as its session
        return SSLError(endpoint_url=endpoint, error=err)
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=endpoint, error=err)
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=endpoint, error=err)
    return ConnectionClosedError(endpoint_url=endpoint, error=err)
