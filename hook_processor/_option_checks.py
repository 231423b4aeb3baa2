"""S3 bucket names and key prefixes, checked before any work.

A bucket name S3 refuses (``bad/name``, ``Bad_Bucket``) or a prefix that cannot be a key prefix
(``/abs``, ``a//b``, ``../up``) used to pass validation and fail with exit 5 after the whole
stage-in and ``process``. These checks name the option and the fix, and never repeat the value
(a mistyped option could hold a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hook_processor._s3url import parse_s3_url
from hook_processor.errors import OptionsError

if TYPE_CHECKING:
    from hook_processor.options import PlatformSettings, StandardOptions

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


def cross_check(
    std: StandardOptions,
    platform: PlatformSettings | None,
    problems: list[str],
    failed: set[str],
    origins: Mapping[str, str],
) -> None:
    """Rules that involve several options, for the options that passed validation (``failed``
    are the others: their rules are skipped, not reported twice). ``origins`` names where
    each value came from, e.g. ``output_s3_path (from the options file)``. One default is
    set here too: the output endpoint is the input's unless given."""
    for name in ("input_s3_endpoint_url", "s3_endpoint_url"):
        url = getattr(std, name)
        if url is not None and not url.startswith(("http://", "https://")):
            problems.append(f"{name}: must be an http:// or https:// URL")
    if "input_s3_path" in failed:
        pass
    elif not std.input_s3_path:
        problems.append(
            "input_s3_path (or source_s3_path): required: the input location, s3://bucket/prefix/"
        )
    else:
        try:
            bucket, key = parse_s3_url(std.input_s3_path, option="input_s3_path")
        except OptionsError as exc:
            problems.append(str(exc))
        else:
            check_location(bucket, key, origins.get("input_s3_path", "input_s3_path"), problems)
    if (std.input_s3_access_key is None) != (std.input_s3_secret_key is None):
        problems.append(
            "input_s3_access_key / input_s3_secret_key: give both or neither (neither: the default "
            "AWS credential chain)"
        )
    if std.s3_bucket:
        shown = origins.get("s3_bucket", "s3_bucket")
        problem = bucket_problem(std.s3_bucket)
        if problem:
            problems.append(f"{shown}: {problem}")
    if std.s3_prefix:
        shown = origins.get("s3_prefix", "s3_prefix")
        problem = prefix_problem(std.s3_prefix)
        if problem:
            problems.append(f"{shown}: {problem}")
    if std.s3_endpoint_url is None and "s3_endpoint_url" not in failed:
        std.s3_endpoint_url = std.input_s3_endpoint_url
    if "output_storage" in failed:
        pass  # which of the rules below apply is unknown
    elif std.output_storage == "PRIVATE":
        if not std.s3_bucket and "s3_bucket" not in failed:
            problems.append(
                "s3_bucket (or output_s3_path): required with output_storage=PRIVATE: the bucket "
                "to publish into (or set output_storage=TEMPORARY)"
            )
        keys = (std.s3_access_key, std.s3_secret_key)
        if None in keys and not {"s3_access_key", "s3_secret_key"} & failed:
            problems.append(
                "s3_access_key and s3_secret_key (or output_s3_access_key, output_s3_secret_key): "
                "required with output_storage=PRIVATE: credentials that can write to the bucket"
            )
    elif platform is not None and not (
        platform.temporary_s3_bucket and platform.temporary_s3_endpoint_url
    ):
        problems.append(
            "output_storage=TEMPORARY needs the platform's temporary storage: set "
            "HOOK_TEMPORARY_S3_ENDPOINT_URL and HOOK_TEMPORARY_S3_BUCKET (and its keys), or use "
            "output_storage=PRIVATE with your own bucket"
        )
    elif platform is not None and platform.temporary_s3_bucket:
        problem = bucket_problem(platform.temporary_s3_bucket)
        if problem:
            problems.append(f"HOOK_TEMPORARY_S3_BUCKET: {problem}")


def check_location(bucket: str, key: str, shown: str, problems: list[str]) -> None:
    for problem in (bucket_problem(bucket), key and prefix_problem(key)):
        if problem:
            problems.append(f"{shown}: {problem}")
