"""The AWS CRT (PyPI ``awscrt``) as a request engine for ``python -m bench engines``.

boto3's CRT transfer path hard-codes https and no endpoint URL (boto3/crt.py), so the
``awscrt.s3.S3Client`` is made by ``s3transfer.crt.create_s3_crt_client`` (s3transfer's own
defaults: 8 MiB parts, the recommended throughput target, one event-loop thread per core) with
TLS off for an http endpoint, and driven directly: one ``make_request`` per object, signed by the
CRT (SigV4, static credentials), path-style ``/bucket/key`` with the endpoint's ``Host``.

Concurrency is the CRT's own: every request of an operation is submitted at once and the CRT
schedules them (connections, ranged GET parts, multipart upload parts); the request rows' "x16"
is that, "x1" waits for each request before the next. Checksums as s3transfer's CRT path: CRC32
in a trailer on uploads, response validation on GETs. The listing is a plain ListObjectsV2
through the same client (``DEFAULT`` request), parsed here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from xml.etree import ElementTree

from bench._adapters import landing, outputs

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class CrtEngine:
    name = "crt"
    extra_keys: tuple[str, ...] = ()

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        settings: Any,
        access_key: str,
        secret_key: str,
        region: str,
    ) -> None:
        from awscrt import auth, http, s3
        from s3transfer.crt import create_s3_crt_client

        self.http, self.s3 = http, s3
        self.bucket = bucket
        parts = urlsplit(endpoint_url)
        self.host = parts.netloc
        self.client = create_s3_crt_client(
            region,
            auth.AwsCredentialsProvider.new_static(access_key, secret_key),
            part_size=settings.part_size,
            use_ssl=parts.scheme == "https",
        )
        self.upload_checksum = s3.S3ChecksumConfig(
            algorithm=s3.S3ChecksumAlgorithm.CRC32, location=s3.S3ChecksumLocation.TRAILER
        )
        self.download_checksum = s3.S3ChecksumConfig(validate_response=True)

    def _request(self, method: str, key: str, length: int = 0, body: Any = None) -> Any:
        headers = self.http.HttpHeaders([("Host", self.host), ("Content-Length", str(length))])
        path = f"/{self.bucket}/{quote(key, safe='/~')}"
        return self.http.HttpRequest(method, path, headers, body)

    def _get(self, key: str, recv_filepath: str | None = None) -> Any:
        return self.client.make_request(
            type=self.s3.S3RequestType.GET_OBJECT,
            request=self._request("GET", key),
            recv_filepath=recv_filepath,
            on_body=None if recv_filepath else _discard,
            checksum_config=self.download_checksum,
        )

    def _put(
        self, key: str, length: int, body: Any = None, send_filepath: str | None = None
    ) -> Any:
        return self.client.make_request(
            type=self.s3.S3RequestType.PUT_OBJECT,
            request=self._request("PUT", key, length, body),
            send_filepath=send_filepath,
            checksum_config=self.upload_checksum,
        )

    @staticmethod
    def _wait(requests: list[Any]) -> None:
        """Wait for every request; then raise the first failure, if any."""
        first: BaseException | None = None
        for request in requests:
            try:
                request.finished_future.result()
            except BaseException as err:  # noqa: BLE001 - the others still finish first
                first = first or err
        if first is not None:
            raise first

    # --- requests ---------------------------------------------------------------------------

    def get_all(self, keys: list[str], in_flight: int) -> None:
        if in_flight == 1:
            for key in keys:
                self._wait([self._get(key)])
        else:
            self._wait([self._get(key) for key in keys])

    def put_all(self, keys: list[str], body: bytes, in_flight: int) -> None:
        if in_flight == 1:
            for key in keys:
                self._wait([self._put(key, len(body), io.BytesIO(body))])
        else:
            self._wait([self._put(key, len(body), io.BytesIO(body)) for key in keys])

    # --- whole transfers --------------------------------------------------------------------

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            chunks: list[bytes] = []
            headers = self.http.HttpHeaders([("Host", self.host), ("Content-Length", "0")])
            request = self.http.HttpRequest(
                "GET", f"/{self.bucket}?{urlencode(query, quote_via=quote)}", headers
            )
            self._wait(
                [
                    self.client.make_request(
                        type=self.s3.S3RequestType.DEFAULT,
                        operation_name="ListObjectsV2",
                        request=request,
                        on_body=lambda chunk, c=chunks, **_: c.append(bytes(chunk)),
                    )
                ]
            )
            root = ElementTree.fromstring(b"".join(chunks))
            keys += [el.findtext(f"{_NS}Key") or "" for el in root.iter(f"{_NS}Contents")]
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return keys

    def stage_in(self, prefix: str, dest: Path) -> None:
        made: set[Path] = set()
        keys = self.list(prefix + "/")
        self._wait([self._get(key, str(landing(dest, prefix, key, made))) for key in keys])

    def publish(self, src: Path, prefix: str) -> None:
        self._wait(
            [
                self._put(key, path.stat().st_size, send_filepath=str(path))
                for path, key in outputs(src, prefix)
            ]
        )

    def close(self) -> None:
        pass


def _discard(chunk: Any, **_: Any) -> None:
    pass
