"""The lean engine's hand-signed control calls where a store answers as no emulator does.

S3 may answer CompleteMultipartUpload with ``200 OK`` and an ``<Error>`` body (the status goes
out before the parts are assembled). moto and rclone never do, so a scripted HTTP server on
127.0.0.1 answers here. As botocore does, such an answer is an error answer of status 500 with
the store's code: retried by the retry policy, and once the attempts are spent, a ClientError
with that code and message.
"""

from __future__ import annotations

import dataclasses
import http.server
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr
from scripted_server import serving

from hook_processor.storage import S3Target, TransferSettings, make_client

DONE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Bucket>b</Bucket><Key>k</Key><ETag>&quot;abc-2&quot;</ETag>"
    b"</CompleteMultipartUploadResult>"
)


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>said by the store</Message></Error>".encode()


@dataclasses.dataclass
class Script:
    answers: list[bytes]  # bodies of the 200 answers, in order (the last one repeats)
    bodies: list[bytes] = dataclasses.field(default_factory=list)  # what the client sent


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script(answers=[DONE])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", 0))
            script.bodies.append(self.rfile.read(length))
            body = script.answers[min(len(script.bodies), len(script.answers)) - 1]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as endpoint:
        yield endpoint, script


def _complete(endpoint: str) -> dict[str, Any]:
    settings = TransferSettings(engine="lean", max_attempts=3)
    client = make_client(S3Target(endpoint, SecretStr("a"), SecretStr("b")), settings)
    try:
        parts = [{"PartNumber": 1, "ETag": '"p1"'}, {"PartNumber": 2, "ETag": '"p&2"'}]
        return client.complete_multipart_upload(
            Bucket="b", Key="k", UploadId="u1", MultipartUpload={"Parts": parts}
        )
    finally:
        client.close()


def test_an_error_in_a_200_answer_is_retried_then_the_upload_completes(
    scripted: tuple[str, Script],
) -> None:
    endpoint, script = scripted
    script.answers = [_error("InternalError"), DONE]
    answer = _complete(endpoint)
    assert answer["ETag"] == '"abc-2"'
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(script.bodies) == 2
    assert script.bodies[0] == script.bodies[1]  # the same parts, ETags escaped as XML
    assert b'<ETag>"p&amp;2"</ETag><PartNumber>2</PartNumber>' in script.bodies[0]


def test_a_store_that_keeps_failing_in_200_answers_is_given_up_after_max_attempts(
    scripted: tuple[str, Script],
) -> None:
    endpoint, script = scripted
    script.answers = [_error("InvalidPart")]
    with pytest.raises(ClientError) as caught:
        _complete(endpoint)
    assert caught.value.response["Error"] == {"Code": "InvalidPart", "Message": "said by the store"}
    assert len(script.bodies) == 3  # max_attempts
