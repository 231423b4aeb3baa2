"""The lean engine's control calls: HEAD, DELETE and the multipart bookkeeping, by hand.

A run that stages and publishes sends a few of these (one HEAD per large input, the claim's
probe and lease, a create and a complete per large output). On the boto3 client they cost
more than the calls themselves: importing boto3 and making its client took ~0.37 s of CPU and
~30 MB of RSS on the bench machine (by hand), mid-transfer when the first large object came.
Signed here, they cost what a GET does, on the same pool, signer and retry policy (lean.py).
Answers are shaped as boto3's (the fields the runtime reads, ``ResponseMetadata``); errors are
ClientErrors with the store's code, as botocore's: a HEAD has no body, so its code is the
status ("404", "412"), as botocore says it too.

Presigning and the rare calls (listing unfinished multipart uploads) stay on the boto3 client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import urllib3
from botocore.exceptions import ClientError

from hook_processor._s3 import wire
from hook_processor._s3.engine import Payload
from hook_processor._s3.sigv4 import EMPTY_SHA256

# HEAD answer headers and the boto3 fields they are read into (what the runtime looks at).
_HEAD_FIELDS = (
    ("etag", "ETag"),
    ("content-type", "ContentType"),
    ("x-amz-version-id", "VersionId"),
    ("x-amz-server-side-encryption", "ServerSideEncryption"),
    ("x-amz-server-side-encryption-customer-algorithm", "SSECustomerAlgorithm"),
    ("x-amz-server-side-encryption-aws-kms-key-id", "SSEKMSKeyId"),
    ("x-amz-checksum-crc32", "ChecksumCRC32"),
    ("x-amz-checksum-crc32c", "ChecksumCRC32C"),
    ("x-amz-checksum-crc64nvme", "ChecksumCRC64NVME"),
    ("x-amz-checksum-sha1", "ChecksumSHA1"),
    ("x-amz-checksum-sha256", "ChecksumSHA256"),
    ("x-amz-checksum-type", "ChecksumType"),
)


class LeanControl:
    """HEAD, DELETE and multipart bookkeeping on the lean engine's ``_request`` (a mixin)."""

    checksum: bool
    retry: Any
    _request: Any

    def head_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        IfMatch: str | None = None,  # noqa: N803
        ChecksumMode: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """ContentLength, ETag, the SSE and checksum fields, Metadata, as boto3's HeadObject."""
        headers: dict[str, str] = {}
        if IfMatch:
            headers["If-Match"] = IfMatch
        if ChecksumMode:
            headers["x-amz-checksum-mode"] = ChecksumMode
        response, retries = self._request(
            "HeadObject", "HEAD", Bucket, Key, {}, headers, None, payload_sha256=EMPTY_SHA256
        )
        _release(response)
        got = {k.lower(): v for k, v in response.headers.items()}
        answer: dict[str, Any] = {"ContentLength": int(got.get("content-length", 0))}
        answer.update({field: got[name] for name, field in _HEAD_FIELDS if name in got})
        answer["Metadata"] = {
            k.removeprefix("x-amz-meta-"): v for k, v in got.items() if k.startswith("x-amz-meta-")
        }
        answer["ResponseMetadata"] = wire.metadata(response, retries)
        return answer

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]:  # noqa: N803
        response, retries = self._request(
            "HeadBucket", "HEAD", Bucket, None, {}, {}, None, payload_sha256=EMPTY_SHA256
        )
        _release(response)
        return {"ResponseMetadata": wire.metadata(response, retries)}

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        response, retries = self._request(
            "DeleteObject", "DELETE", Bucket, Key, {}, {}, None, payload_sha256=EMPTY_SHA256
        )
        _release(response)
        return {"ResponseMetadata": wire.metadata(response, retries)}

    def create_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        headers = {"Content-Length": "0"}
        if ContentType:
            headers["Content-Type"] = ContentType
        root, meta = self._post("CreateMultipartUpload", Bucket, Key, {"uploads": ""}, headers)
        upload_id = _text(root, "UploadId")
        if not upload_id:
            raise _malformed("CreateMultipartUpload", "no UploadId", meta)
        return {"Bucket": Bucket, "Key": Key, "UploadId": upload_id, "ResponseMetadata": meta}

    def complete_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        MultipartUpload: Mapping[str, Any],  # noqa: N803
    ) -> dict[str, Any]:
        parts = "".join(
            f"<Part><ETag>{escape(str(p['ETag']))}</ETag>"
            f"<PartNumber>{int(p['PartNumber'])}</PartNumber></Part>"
            for p in MultipartUpload["Parts"]
        )
        xml = (
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{parts}</CompleteMultipartUpload>"
        ).encode()
        body = Payload(data=xml)
        headers = {"Content-Length": str(len(xml)), "Content-Type": "application/xml"}
        root, meta = self._post(
            "CompleteMultipartUpload", Bucket, Key, {"uploadId": UploadId}, headers, body
        )
        return {"Bucket": Bucket, "Key": Key, "ETag": _text(root, "ETag"), "ResponseMetadata": meta}

    def abort_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
    ) -> dict[str, Any]:
        response, retries = self._request(
            "AbortMultipartUpload",
            "DELETE",
            Bucket,
            Key,
            {"uploadId": UploadId},
            {},
            None,
            payload_sha256=EMPTY_SHA256,
        )
        _release(response)
        return {"ResponseMetadata": wire.metadata(response, retries)}

    def _post(
        self,
        operation: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Payload | None = None,
    ) -> tuple[ElementTree.Element, dict[str, Any]]:
        """A POST and its XML answer. S3 may answer a CompleteMultipartUpload with 200 and an
        ``<Error>`` in the body (the status is sent before the work is done): that is an error
        answer, retried as one by the retry policy, as botocore does."""
        payload = body.sha256() if body is not None else EMPTY_SHA256
        attempts = self.retry.attempts()
        while True:
            attempts.start()
            response, retries = self._request(
                operation,
                "POST",
                bucket,
                key,
                query,
                dict(headers),
                body if body is not None else Payload(data=b""),
                payload_sha256=payload,
            )
            try:
                data = response.read()
            except (urllib3.exceptions.HTTPError, OSError):
                data = b""
            finally:
                _release(response)
            meta = wire.metadata(response, retries + attempts.retries)
            try:
                root = ElementTree.fromstring(data)
            except ElementTree.ParseError:
                raise _malformed(operation, "an answer that is no XML", meta) from None
            if _local(root.tag) != "Error":
                attempts.succeeded()
                return root, meta
            code, message = wire.parse_error(data, 200)
            wait = attempts.after_answer(500, code)  # an error in a 200: as a 5xx of that code
            if wait is None:
                raise ClientError(
                    {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta},
                    operation,
                )
            time.sleep(wait)


def _release(response: urllib3.BaseHTTPResponse) -> None:
    try:
        response.drain_conn()
    finally:
        response.release_conn()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(root: ElementTree.Element, name: str) -> str:
    for element in root.iter():
        if _local(element.tag) == name and element.text:
            return element.text
    return ""


def _malformed(operation: str, what: str, meta: dict[str, Any]) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "InvalidResponse", "Message": f"the store sent {what}"},
            "ResponseMetadata": meta,
        },
        operation,
    )
