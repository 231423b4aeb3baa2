"""The option set of a local run: what the harness gives the runtime, as a platform would.

Internal to :mod:`hook_processor.harness`: the standard options pointing at the local (or the
user's) S3, an order body's endpoints/buckets/credentials replaced, every other option kept,
``--option`` over all; then the whole run environment (options as variables, HOOK_* settings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hook_processor.errors import OptionsError
from hook_processor.s3server import S3Server

INPUT_BUCKET, OUTPUT_BUCKET, TEMPORARY_BUCKET = "hook-input", "hook-output", "hook-temporary"
# The harness sets these itself; an --option may not override them.
OWNED_SETTINGS = frozenset({"HOOK_WORK_DIR", "HOOK_RESULT_PATH", "HOOK_PROJECT_DIR"})


def _standard_names() -> tuple[dict[str, str], frozenset[str], frozenset[str]]:
    from hook_processor.options import StandardOptions, option_aliases

    aliases = {
        alias.lower(): name
        for name in StandardOptions.model_fields
        for alias in option_aliases(StandardOptions, name)
    }
    endpoints_and_keys = frozenset(
        n
        for n in StandardOptions.model_fields
        if n.endswith(("endpoint_url", "access_key", "secret_key"))
    )
    locations = frozenset(StandardOptions.model_fields) - endpoints_and_keys - {"output_storage"}
    return aliases, endpoints_and_keys, locations


def build_options(
    server: S3Server,
    scratch: bool,
    run_id: str,
    file_options: Mapping[str, Any],
    user_options: Mapping[str, str],
    output_storage: str | None,
) -> tuple[dict[str, str], list[str], list[str]]:
    """The run's options by canonical name, the options-file names that were replaced, and
    which --option overrode which options-file name (names only, for the log).

    Options-file entries naming an S3 endpoint or credentials (and, on the harness's own S3,
    buckets and paths too) are replaced; every other entry is kept. --option wins over all,
    by the runtime's rule (:mod:`hook_processor._option_sources`): two names of one option that
    disagree in one source are an OptionsError, a ``null`` value is not given.
    """
    from hook_processor._option_names import CLI, FILE
    from hook_processor._option_sources import Layer, flatten
    from hook_processor._s3url import parse_s3_url

    aliases, endpoints_and_keys, locations = _standard_names()
    replace = endpoints_and_keys | (locations if scratch else frozenset())

    def canonical(name: str) -> str:
        return aliases.get(name.strip().lower(), name.strip().lower())

    problems: list[str] = []
    file_layer, cli_layer = Layer(FILE), Layer(CLI)
    replaced: list[str] = []
    for name, value in file_options.items():
        if canonical(name) in replace:
            replaced.append(name)
        elif value is not None:
            file_layer.add(canonical(name), name, text(value), problems)
    for name, value in user_options.items():
        cli_layer.add(canonical(name), name, value, problems)
    options = file_layer.values
    storage_kind = (
        (
            output_storage
            or next((v for k, v in user_options.items() if canonical(k) == "output_storage"), None)
            or options.get("output_storage", "PRIVATE")
        )
        .strip()
        .upper()
    )
    ours = {
        "input_s3_endpoint_url": server.endpoint_url,
        "input_s3_access_key": server.access_key,
        "input_s3_secret_key": server.secret_key,
    }
    if storage_kind != "TEMPORARY":
        ours.update(
            s3_endpoint_url=server.endpoint_url,
            s3_access_key=server.access_key,
            s3_secret_key=server.secret_key,
        )
    if scratch:
        ours["input_s3_path"] = f"s3://{INPUT_BUCKET}/{run_id}/"
        if storage_kind != "TEMPORARY":
            ours.update(s3_bucket=OUTPUT_BUCKET, s3_prefix=run_id)
    if "output_s3_path" in cli_layer.values or "output_s3_path" in options:  # bucket and prefix
        for name in ("s3_bucket", "s3_prefix"):
            ours.pop(name, None)
    ours_layer = Layer("hook-processor run", dict(ours), {name: name for name in ours})
    merged, _ = flatten((file_layer, ours_layer, cli_layer), parse_s3_url, problems)
    _, overrides = flatten((file_layer, cli_layer), parse_s3_url, [])
    if problems:
        raise OptionsError(
            "the options are not valid; nothing was transferred:\n"
            + "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        )
    if output_storage:
        merged["output_storage"] = output_storage.strip().upper()
    return merged, replaced, overrides


MOTO_RANGES = 16  # HOOK_DOWNLOAD_RANGES for the harness's moto (run_env)


def run_env(
    environ: Mapping[str, str],
    options: Mapping[str, str],
    order: Mapping[str, Any],
    server: S3Server,
    scratch: bool,
    work_dir: Path,
    project_dir: Path | None,
    entrypoint: str | None,
) -> dict[str, str]:
    """The options as environment variables, plus the HOOK_* settings a platform would give."""
    env = {k.upper(): v for k, v in environ.items() if k.upper().startswith("HOOK_")}
    for name in OWNED_SETTINGS:
        env.pop(name, None)
    env.update(
        HOOK_WORK_DIR=str(work_dir),
        HOOK_RESULT_PATH=str(work_dir / "result.json"),
        HOOK_TEMPORARY_S3_ENDPOINT_URL=server.endpoint_url,
        HOOK_TEMPORARY_S3_ACCESS_KEY=server.access_key,
        HOOK_TEMPORARY_S3_SECRET_KEY=server.secret_key,
    )
    if scratch:
        env["HOOK_TEMPORARY_S3_BUCKET"] = TEMPORARY_BUCKET
        # The harness's S3 is moto, which reads a whole object for every ranged GET: one range
        # per transfer thread (at the default concurrency), not one per 8 MiB part.
        env.setdefault("HOOK_DOWNLOAD_RANGES", str(MOTO_RANGES))
    if project_dir is not None:
        env["HOOK_PROJECT_DIR"] = str(project_dir)
    if entrypoint:
        env["HOOK_ENTRYPOINT"] = entrypoint
    for field, setting in (
        ("Id", "HOOK_ORDER_ID"),
        ("Name", "HOOK_ORDER_NAME"),
        ("WorkflowName", "HOOK_WORKFLOW_NAME"),
        ("Priority", "HOOK_PRIORITY"),
    ):
        if order.get(field) is not None:
            env[setting] = str(order[field])
    if order.get("IdentifierList") is not None:
        env["HOOK_IDENTIFIERS"] = json.dumps(order["IdentifierList"])
    for name, value in options.items():
        env[name.upper()] = value
    return env


def given_options(
    file_options: Mapping[str, Any], user_options: Mapping[str, str], user_label: str = "--option"
) -> dict[str, str]:
    """HOOK_GIVEN_OPTIONS: the option names (never values) of the options file and --option.

    The runtime gets the options as environment variables, where an unknown name cannot be told
    from any other variable; with these names it reports each unknown one (the harness cannot:
    it does not import the processor, so it does not know its options). A known HOOK_* name is
    a setting here, not an option: it is left out.
    """
    from hook_processor._option_names import FILE, GIVEN_OPTIONS, encode_given, hook_settings
    from hook_processor.options import PlatformSettings

    settings = hook_settings(PlatformSettings.model_fields)
    names = [(name, FILE) for name in file_options if name.strip().upper() not in settings]
    names += [(name, user_label) for name in user_options if name.strip().upper() not in settings]
    return {GIVEN_OPTIONS: encode_given(names)}


def target(options: Mapping[str, str], side: str, server: S3Server) -> Any:
    from pydantic import SecretStr

    from hook_processor.storage import S3Target

    prefix = "input_s3" if side == "input" else "s3"
    endpoint = options.get(f"{prefix}_endpoint_url") or options.get("input_s3_endpoint_url")
    access = options.get(f"{prefix}_access_key")
    secret = options.get(f"{prefix}_secret_key")
    return S3Target(
        endpoint or server.endpoint_url,
        SecretStr(access) if access is not None else None,
        SecretStr(secret) if secret is not None else None,
        server.region,
    )


def input_location(options: Mapping[str, str], files: list[Any]) -> tuple[str, str]:
    """(bucket, key prefix ending in '/' or empty) that --input is uploaded under."""
    from hook_processor._s3url import parse_s3_url

    path = options.get("input_s3_path")
    if not path:
        if files:
            raise OptionsError(
                "--input with --s3-endpoint: name where to upload it with input_s3_path "
                "(--option input_s3_path=s3://bucket/prefix/ or in --options-file)"
            )
        return "", ""
    bucket, key = parse_s3_url(path, option="input_s3_path")
    return bucket, key if not key or key.endswith("/") else key + "/"


def output_bucket(options: Mapping[str, str]) -> str:
    from hook_processor._s3url import parse_s3_url

    if options.get("output_s3_path"):
        return parse_s3_url(options["output_s3_path"], option="output_s3_path")[0]
    return options.get("s3_bucket", "")


def lookup(mapping: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in mapping.items() if k.upper() == name and v), None)


def text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
