"""AWS Signature Version 4 for S3 requests, by hand (the lean engine of ``lean.py``).

botocore's signer runs inside its event machinery, which costs more CPU per request than the
signature itself; this is the same algorithm with nothing around it. tests/test_signatures.py
checks it against rclone serve s3, which verifies signatures (moto does not).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SigV4Signer:
    """Signs requests to one S3 endpoint with one set of credentials."""

    def __init__(
        self, access_key: str, secret_key: str, token: str | None, region: str, netloc: str
    ) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.token = token
        self.region = region
        self.netloc = netloc
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback
        return f"SigV4Signer(region={self.region!r}, netloc={self.netloc!r})"

    def sign(
        self,
        method: str,
        path: str,
        canonical_query: str,
        headers: dict[str, str],
        payload_sha256: str | None,
    ) -> dict[str, str]:
        """``headers`` plus Host, x-amz-date, x-amz-content-sha256 and Authorization."""
        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        payload = payload_sha256 or (EMPTY_SHA256 if method == "GET" else UNSIGNED)
        out = dict(headers)
        out["Host"] = self.netloc
        out["x-amz-date"] = amz_date
        out["x-amz-content-sha256"] = payload
        if self.token:
            out["x-amz-security-token"] = self.token
        signed = sorted(
            (k.lower(), " ".join(str(v).split()))
            for k, v in out.items()
            if k.lower() in ("host", "content-md5") or k.lower().startswith("x-amz-")
        )
        names = ";".join(k for k, _ in signed)
        canonical = "\n".join(
            (
                method,
                path,
                canonical_query,
                "".join(f"{k}:{v}\n" for k, v in signed),
                names,
                payload,
            )
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(self._key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return out

    def _key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = ("AWS4" + self._secret_key).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return key
