"""A failed transfer reports the failure that caused it, not one of its consequences.

Seen in CI: a byte flipped in part 1 of a multipart upload (BadDigest) made rclone drop the
upload, so part 2, in flight, was answered NoSuchUpload; when part 2's error reached the pool
first, the publication named NoSuchUpload and the corruption was not said at all.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError
from test_part_pipeline import _job as make_job

from hook_processor._s3.engine import TransferSettings
from hook_processor._s3.transfer import Job
from hook_processor.errors import PublishError


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "UploadPart")


def _job() -> Job:
    # Job.run makes no S3 call of its own; the endpoint is only named in messages.
    return make_job(
        SimpleNamespace(endpoint_url="http://127.0.0.1:9"), TransferSettings(concurrency=2)
    )


def test_a_no_such_upload_that_came_first_does_not_hide_the_bad_digest_that_caused_it() -> None:
    job = _job()
    dropped = threading.Event()

    def in_flight_part() -> None:  # answered first: the store had already dropped the upload
        dropped.set()
        raise _client_error("NoSuchUpload", 404)

    def corrupted_part() -> None:  # the cause, whose answer is read a moment later
        dropped.wait(5)
        threading.Event().wait(0.2)
        raise _client_error("BadDigest", 400)

    units = [
        job.unit("could not upload big.bin (part 2)", in_flight_part),
        job.unit("could not upload big.bin (part 1)", corrupted_part),
    ]
    try:
        job.run(units)
    except PublishError as err:
        message = str(err)
    else:
        raise AssertionError("the publication did not fail")
    assert "BadDigest" in message, message
    assert "part 1" in message, message


def test_a_no_such_upload_alone_is_still_the_error() -> None:
    """Another actor aborted the upload (a takeover's claim): that is the error to say."""
    job = _job()

    def part() -> None:
        raise _client_error("NoSuchUpload", 404)

    try:
        job.run([job.unit("could not upload big.bin", part)])
    except PublishError as err:
        assert "NoSuchUpload" in str(err)
    else:
        raise AssertionError("the publication did not fail")


def test_of_two_real_failures_the_one_submitted_first_is_named() -> None:
    """Errors that arrive together are taken in the order of their units, not of a set."""
    job = _job()
    both = threading.Barrier(2)

    def failing(code: str) -> Any:
        def run() -> None:
            both.wait(5)
            raise _client_error(code, 403)

        return run

    try:
        job.run([job.unit("first", failing("AccessDenied")), job.unit("second", failing("X"))])
    except PublishError as err:
        assert str(err).startswith("first"), err
    else:
        raise AssertionError("the publication did not fail")
