"""What a downloaded object is checked against, and the requests pinned to its listed version.

A whole GET is checked against the checksum the store returns with it (validated by the engine)
or else the object's MD5 ETag (a single-part upload without SSE-KMS or SSE-C); a large object
assembled from ranged GETs against what one HEAD says (:func:`whole_check`). Every GET and HEAD
of an object carries ``If-Match`` with the listed ETag: a 412 is the object changed since the
listing, said so (:func:`pinned`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from hook_processor._s3.transfer import Job, http_status
from hook_processor._s3.wire import Crc32
from hook_processor.errors import StagingError

if TYPE_CHECKING:
    from hook_processor._s3.download import Remote

# Response checksums the engines validate on whole-object GETs (with ``when_supported``).
VALIDATED = ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256")
_MD5 = re.compile(r"[0-9a-f]{32}")


def md5_etag(etag: str, headers: dict[str, str]) -> str | None:
    """The object's MD5 when its ETag is one (a single-part upload, no SSE-KMS / SSE-C), else
    None: a multipart ETag ends in ``-N`` and an encrypted object's is not its MD5."""
    value = etag.strip('"').lower()
    if not _MD5.fullmatch(value):
        return None
    if headers.get("x-amz-server-side-encryption", "AES256").upper() != "AES256":
        return None
    if "x-amz-server-side-encryption-customer-algorithm" in headers:
        return None
    return value


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    return dict(response.get("ResponseMetadata", {}).get("HTTPHeaders", {}))


def etag_is_no_md5(job: Job, remote: Remote, headers: dict[str, str]) -> bool:
    """Whether an ETag that the body's MD5 does not match is no MD5 at all (SSE-KMS, SSE-C):
    said by the GET's headers, or, for an engine that shows none (obstore), by one HEAD of the
    version listed. Only then is a mismatch not a corrupted body."""
    if any(h.startswith("x-amz-server-side-encryption") for h in headers):
        return md5_etag(remote.etag, headers) is None
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": remote.key}
    if remote.etag:
        params["IfMatch"] = remote.etag
    try:
        head = pinned(job, job.s3.head_object, remote, params)
    except (ClientError, StagingError):
        return False  # changed or gone: the retry's pinned GET says which
    return md5_etag(remote.etag, headers_of(head)) is None


def pinned(
    job: Job, call: Callable[..., dict[str, Any]], remote: Remote, params: dict[str, Any]
) -> dict[str, Any]:
    """A GET or HEAD pinned to the listed version (``If-Match`` in ``params``); its 412 is the
    object changed since the listing, said so."""
    try:
        return job.call(call, **params)
    except ClientError as err:
        if http_status(err) == 412:
            raise StagingError(
                f"{job.url(remote.key)} changed during staging (it is no longer the version "
                f"the listing named, ETag {remote.etag}); run again"
            ) from err
        raise


# Full-object checksums we can compute with the standard library (botocore names, digest).
_WHOLE_CHECKSUMS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("ChecksumCRC32", lambda: Crc32()),
    ("ChecksumSHA256", lambda: hashlib.sha256()),
    ("ChecksumSHA1", lambda: hashlib.sha1(usedforsecurity=False)),
)


@dataclasses.dataclass
class WholeCheck:
    """The digest a large object's assembled bytes must give: its stored checksum or MD5 ETag."""

    field: str  # "MD5" or a botocore checksum field ("ChecksumCRC32" ...)
    expected: str  # hex for MD5, base64 for the others (as the store says them)
    digest: Any

    def verify(self, job: Job, remote: Remote) -> None:
        d = self.digest
        got = d.hexdigest() if self.field == "MD5" else base64.b64encode(d.digest()).decode()
        if got != self.expected:
            raise StagingError(
                f"{job.url(remote.key)}: the downloaded bytes do not match the object's stored "
                f"{self.field.removeprefix('Checksum')} checksum (corrupted in transit); run again"
            )


def whole_check(job: Job, remote: Remote) -> WholeCheck | None:
    """What a large object assembled from ranged GETs is checked against, from one HEAD.

    A ranged GET comes without a checksum (S3 stores one for the whole object), so a byte
    corrupted in transit would pass the size check. The object's full-object checksum (when it
    has one of a kind we can compute: not a composite ``...-N`` of a multipart upload), else
    its MD5 ETag (a single-part upload without SSE-KMS or SSE-C, which the HEAD's headers say
    whatever the engine), is compared with the assembled file before it is renamed into place;
    a mismatch fails the staging (no partial file is kept) instead of keeping corrupt data.
    None: the object has neither (a multipart upload without a full-object checksum).
    """
    params: dict[str, Any] = {"Bucket": job.bucket, "Key": remote.key}
    if job.settings.checksum == "when_supported":  # else the store may not support checksums
        params["ChecksumMode"] = "ENABLED"
    if remote.etag:
        params["IfMatch"] = remote.etag
    head = pinned(job, job.s3.head_object, remote, params)
    if job.settings.checksum == "when_supported":
        stored = stored_checksum(head, remote)
        if stored is not None:
            return stored
    md5 = md5_etag(remote.etag, headers_of(head))
    if md5 is None:
        return None
    return WholeCheck("MD5", md5, hashlib.md5(usedforsecurity=False))


def stored_checksum(head: dict[str, Any], remote: Remote) -> WholeCheck | None:
    """The object's full-object checksum from its HEAD (with ChecksumMode), or None."""
    kind = head.get("ChecksumType")
    if kind is None and "-" in str(head.get("ETag", remote.etag)).strip('"'):
        # A multipart object whose store does not say the checksum's type (moto 5.2 answers
        # the value without ChecksumType or a "-N" suffix): not a whole-object checksum.
        return None
    if (kind or "FULL_OBJECT") != "FULL_OBJECT":
        return None
    usable = [(f, make) for f, make in _WHOLE_CHECKSUMS if "-" not in str(head.get(f) or "-")]
    if not usable:
        return None
    field, make = usable[0]
    return WholeCheck(field, str(head[field]), make())
