"""S3 bucket names and key prefixes, checked before any work.

A bucket name S3 refuses (``bad/name``, ``Bad_Bucket``) or a prefix that cannot be a key prefix
(``/abs``, ``a//b``, ``../up``) used to pass validation and fail with exit 5 after the whole
stage-in and ``process``. These checks name the option and the fix, and never repeat the value
(a mistyped option could hold a secret).
"""

from __future__ import annotations

import re

_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IP_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_BUCKET_RULES = (
    "S3 bucket names are 3-63 characters: lowercase letters, digits, '.' and '-', starting and "
    "ending with a letter or digit, e.g. my-results"
)
_MAX_KEY_BYTES = 1024  # S3's limit for a whole key; a prefix must leave room for the names


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None."""
    if not 3 <= len(bucket) <= 63:
        why = f"it has {len(bucket)} characters"
    elif not _BUCKET_CHARS.fullmatch(bucket):
        why = "it has characters other than lowercase letters, digits, '.' and '-'"
    elif not (bucket[0].isalnum() and bucket[-1].isalnum()):
        why = "it does not start and end with a letter or digit"
    elif ".." in bucket or ".-" in bucket or "-." in bucket:
        why = "it has '..', '.-' or '-.'"
    elif _IP_LIKE.fullmatch(bucket):
        why = "it is formatted like an IP address"
    else:
        return None
    return f"not a valid S3 bucket name: {why}; {_BUCKET_RULES}"


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a key prefix (one trailing '/' allowed), or None."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        why = "it contains control characters (a newline, a tab...)"
    elif prefix.startswith("/"):
        why = "it starts with '/' (keys are relative: results/run1, not /results/run1)"
    elif len(prefix.encode("utf-8")) > _MAX_KEY_BYTES:
        why = f"it is longer than {_MAX_KEY_BYTES} bytes, S3's limit for a whole key"
    else:
        segments = prefix.removesuffix("/").split("/") if prefix else []
        if "" in segments:
            why = "it has an empty segment ('//')"
        elif "." in segments or ".." in segments:
            why = "it has a '.' or '..' segment (keys are not paths to resolve)"
        else:
            return None
    return f"not a valid key prefix: {why}"
