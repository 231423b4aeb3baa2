"""The TEMPORARY download link: presigned with SigV4, its validity, and one ranged GET to prove it.

SigV4 because every S3 store accepts it (``rclone serve s3`` and other SigV4-only stores answer a
SigV2 link with HTTP 400); the boto3 client is created with ``signature_version="s3v4"`` so that
``generate_presigned_url`` never falls back to botocore's SigV2 default for presigning.

Validity: AWS refuses a SigV4 link valid for more than 7 days (``X-Amz-Expires`` is capped at
604800 s), so for an AWS endpoint a longer request is capped at 7 days, with a warning. Other
stores keep the validity asked for (14 days by default); when the link is verified and such a
store refuses it, one 7-day link is tried, and used (with a warning) if it works.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

from hook_processor._log import LOGGER_NAME
from hook_processor._s3.engine import Engine
from hook_processor.errors import PublishError

SIGV4_MAX_SECONDS = 7 * 24 * 3600  # AWS's cap for a SigV4 presigned URL
_ATTEMPTS = 3  # a verification GET that meets a connection error or a 5xx

log = logging.getLogger(LOGGER_NAME)


def is_aws(endpoint_url: str) -> bool:
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    return host == "amazonaws.com" or host.endswith(".amazonaws.com")


def download_link(
    client: Engine, bucket: str, key: str, expires_in: int, *, verify: bool
) -> tuple[str, int]:
    """A SigV4 link to ``s3://bucket/key`` and the seconds it is valid; with ``verify``, one
    ranged GET (``Range: bytes=0-0``) must answer 206 or 200, else PublishError with the status."""
    url = f"s3://{bucket}/{key}"
    if expires_in > SIGV4_MAX_SECONDS and is_aws(client.endpoint_url):
        log.warning(
            "download link: AWS caps SigV4 links at 7 days; HOOK_DOWNLOAD_LINK_SECONDS=%d "
            "reduced to %d",
            expires_in,
            SIGV4_MAX_SECONDS,
        )
        expires_in = SIGV4_MAX_SECONDS
    link = _presign(client, bucket, key, expires_in)
    if not verify:
        return link, expires_in
    status = _probe(client, link)
    if status in (200, 206):
        return link, expires_in
    if expires_in > SIGV4_MAX_SECONDS and status in (400, 403):
        # Some stores follow AWS's 7-day cap: try the longest validity every store allows.
        shorter = _presign(client, bucket, key, SIGV4_MAX_SECONDS)
        if _probe(client, shorter) in (200, 206):
            log.warning(
                "download link: the store refused a link valid for %d s (HTTP %d); the link is "
                "valid for %d s (7 days) instead",
                expires_in,
                status,
                SIGV4_MAX_SECONDS,
            )
            return shorter, SIGV4_MAX_SECONDS
    raise PublishError(
        f"the download link of {url} does not work: a ranged GET of it answered HTTP {status} at "
        f"{client.endpoint_url}; the zip is stored but cannot be downloaded with the link "
        "(check the temporary storage's endpoint and credentials; HOOK_VERIFY_LINK=0 skips "
        "this check)"
    )


def _presign(client: Engine, bucket: str, key: str, expires_in: int) -> str:
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
    )


def _probe(client: Engine, link: str) -> int | str:
    """The HTTP status of one ``GET link`` for its first byte, through the boto3 client's own
    HTTP session (its CA bundle, proxies and timeouts); a connection error is retried."""
    from botocore.awsrequest import AWSRequest
    from botocore.exceptions import BotoCoreError

    session = _http_session(client.boto)
    outcome: int | str = "no answer"
    for attempt in range(_ATTEMPTS):
        request = AWSRequest(method="GET", url=link, headers={"Range": "bytes=0-0"}).prepare()
        try:
            response = session.send(request)
        except BotoCoreError as err:
            outcome = f"no answer ({type(err).__name__})"
        else:
            outcome = int(response.status_code)
            if outcome < 500:
                return outcome
        if attempt + 1 < _ATTEMPTS:
            time.sleep(0.2 * 2**attempt)
    return outcome


def _http_session(boto_client: Any) -> Any:
    """The boto3 client's own HTTP session: the one place that reads botocore's private parts.

    Why private: botocore has no public way to send a request that is not an API call (here a
    GET of a presigned URL) with a client's HTTP settings, and none to read them back (the CA
    bundle given as ``verify``, the proxies from the environment and its config, the timeouts).
    A session of our own (``botocore.httpsession.URLLib3Session``) would have to rebuild each of
    them and could drift from what the client's own requests use, so that a link could be
    judged through another route than the data went.
    """
    return boto_client._endpoint.http_session
