"""``s3://bucket/key`` parsing, shared by the option contract and the data plane (imports nothing
of either)."""

from __future__ import annotations

import re

from hook_processor.errors import OptionsError

_S3_FORM = "s3://bucket/prefix"
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def parse_s3_url(url: str, *, option: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); raises OptionsError naming ``option``.

    ``s3://bucket`` and ``s3://bucket/`` give ``(bucket, "")``. The value itself is never
    repeated in the message (a mistyped option could hold a secret).
    """

    def bad(why: str) -> OptionsError:
        return OptionsError(
            f"{option}: expected an S3 URL of the form {_S3_FORM} (for example "
            f"s3://my-bucket/input/), but {why}"
        )

    if not isinstance(url, str) or url[:5].lower() != "s3://":
        raise bad("the value does not start with s3://")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise bad("the bucket name is missing")
    if not _BUCKET.fullmatch(bucket):
        raise bad(
            "the bucket name is not valid (letters, digits, '.', '-' and '_' only, "
            "starting with a letter or digit)"
        )
    return bucket, key
