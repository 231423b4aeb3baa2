"""The option contract: the standard Hook options, the platform's HOOK_* settings, the order.

Options reach a processor from three sources, highest first:

1. ``--option NAME=VALUE`` on the command line;
2. ``--options-file FILE``: the order body a user POSTs to ``BatchOrder/OData.CSC.Order``
   (``WorkflowOptions`` is a list of ``{"Name", "Value"}``) or a plain ``{name: value}`` object;
3. the environment, names case-insensitive (``input_s3_path`` or ``INPUT_S3_PATH``).

The standard options of all three are ordered by one rule, for every name of an option
(:mod:`hook_processor._option_sources`), and become the model's init values; a processor's own
options from sources 1 and 2 too, while its environment is read by a pydantic-settings source
bound to the mapping the caller passes (``os.environ`` in the service, an explicit dict in tests
and in the in-process harness), whose decoding is every source's
(:mod:`hook_processor._option_values`). Everything is validated before any I/O, and every problem
is reported at once, one line per option, without ever echoing a value; an option that fails
skips only the rules that depend on it. Bucket names and key prefixes are checked too
(:mod:`hook_processor._option_checks`). A name no model knows is
reported with the nearest known one (:mod:`hook_processor._option_names`): a warning, or one of
the problems when there are others or ``HOOK_STRICT_OPTIONS=1``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from hook_processor import _option_names
from hook_processor._option_checks import cross_check
from hook_processor._option_files import options_file_repeats
from hook_processor._option_files import parse_cli_options as parse_cli_options  # re-exported
from hook_processor._option_files import read_options_file as read_options_file  # re-exported
from hook_processor._option_names import UnknownOption
from hook_processor._option_sources import Layer, merge, split_output_path
from hook_processor._option_values import (
    MappingEnvSource,
    bool_as_number,
    bound_env,
    decoded,
    in_declared_case,
    json_hint,
)
from hook_processor.errors import OptionsError

# Options the platform injects into stored orders; not user-set, accepted silently.
PLATFORM_INJECTED = frozenset({"brand", "platform", "version"})


class _SettingsBase(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):
        return (init_settings, MappingEnvSource(settings_cls))

    @field_validator("*", mode="before")
    @classmethod
    def _choice_in_any_case(cls, value: Any, info: ValidationInfo) -> Any:
        """A choice (``Literal`` or ``Enum`` of strings) given in another case: the declared one."""
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if bool_as_number(annotation, value):
            raise ValueError("true/false is not a number here: give a number (1 or 0)")
        return in_declared_case(annotation, value)


class Options(_SettingsBase):
    """Base class of a processor's workflow-specific options.

    Subclass it with typed fields; ``process`` receives an instance when it has a parameter
    ``options`` annotated with the subclass. Field descriptions, defaults and ``Literal`` choices
    become the WorkflowOptions that ``hook-processor describe`` prints.
    """


def _option(*aliases: str, description: str, default: Any = None, **kwargs: Any) -> Any:
    return Field(
        default,
        validation_alias=AliasChoices(*aliases) if len(aliases) > 1 else aliases[0],
        description=description,
        **kwargs,
    )


class StandardOptions(_SettingsBase):
    """The standard Hook input/output options (seed names first, live-service aliases after)."""

    input_s3_endpoint_url: str | None = _option(
        "input_s3_endpoint_url",
        "source_s3_endpoint_url",
        description="S3 endpoint of the input, e.g. https://s3.central.data.destination-earth.eu",
    )
    input_s3_path: str | None = _option(
        "input_s3_path",
        "source_s3_path",
        description="Input location: s3://bucket/prefix/ (every object under it) or "
        "s3://bucket/key (one object)",
    )
    input_s3_access_key: SecretStr | None = _option(
        "input_s3_access_key", "source_s3_access_key", description="Access key of the input store"
    )
    input_s3_secret_key: SecretStr | None = _option(
        "input_s3_secret_key", "source_s3_secret_key", description="Secret key of the input store"
    )
    output_storage: Literal["PRIVATE", "TEMPORARY"] = _option(
        "output_storage",
        default="PRIVATE",
        description="PRIVATE: your S3 bucket (s3_* options); TEMPORARY: the service's temporary "
        "storage, a zip behind a download link valid 14 days",
    )
    s3_endpoint_url: str | None = _option(
        "s3_endpoint_url",
        "output_s3_endpoint_url",
        description="S3 endpoint of the PRIVATE output (default: the input endpoint)",
    )
    s3_bucket: str | None = _option("s3_bucket", description="Bucket of the PRIVATE output")
    s3_prefix: str | None = _option("s3_prefix", description="Key prefix of the PRIVATE output")
    output_s3_path: str | None = _option(
        "output_s3_path",
        description="PRIVATE output as s3://bucket/prefix (sets s3_bucket and s3_prefix)",
    )
    s3_access_key: SecretStr | None = _option(
        "s3_access_key",
        "output_s3_access_key",
        description="Access key of the PRIVATE output store",
    )
    s3_secret_key: SecretStr | None = _option(
        "s3_secret_key",
        "output_s3_secret_key",
        description="Secret key of the PRIVATE output store",
    )

    @field_validator("output_storage", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


def option_aliases(model: type[BaseSettings], name: str) -> list[str]:
    """Every name a field of ``model`` is accepted under, canonical name first."""
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(a) for a in alias.choices]
    return [str(alias or name)]


_ALIAS_TO_STANDARD = {
    alias: name
    for name in StandardOptions.model_fields
    for alias in option_aliases(StandardOptions, name)
}
SECRET_OPTIONS = frozenset(
    alias
    for name, field in StandardOptions.model_fields.items()
    if field.annotation == SecretStr | None
    for alias in option_aliases(StandardOptions, name)
)


class PlatformSettings(_SettingsBase):
    """Settings of the platform that runs the container: ``HOOK_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HOOK_", case_sensitive=False, extra="ignore")

    work_dir: Path = Field(
        Path("hook-work"), description="Folder holding input/, output/, result.json"
    )
    result_path: Path | None = Field(
        None, description="Where the result JSON goes (default WORK_DIR/result.json)"
    )
    temporary_s3_endpoint_url: str | None = Field(
        None, description="Endpoint of the temporary storage"
    )
    temporary_s3_bucket: str | None = Field(None, description="Bucket of the temporary storage")
    temporary_s3_access_key: SecretStr | None = Field(
        None, description="Access key of the temporary storage"
    )
    temporary_s3_secret_key: SecretStr | None = Field(
        None, description="Secret key of the temporary storage"
    )
    temporary_s3_prefix: str = Field(
        "", description="Key prefix of the zips in the temporary storage"
    )
    download_link_seconds: int = Field(
        14 * 24 * 3600, gt=0, description="Validity of the download link"
    )
    verify_link: bool = Field(
        True,
        description="TEMPORARY: check the download link with one ranged GET before reporting it "
        "(a link that does not work: exit 5)",
    )
    concurrency: int = Field(16, ge=1, le=256, description="Transfers in flight at once")
    part_size_mb: int = Field(8, ge=5, le=5120, description="Part size of multipart transfers, MiB")
    download_ranges: int = Field(
        0,
        ge=0,
        le=10000,
        description="At most this many ranged GETs per large object (0: one per part size); "
        "for stores that read the whole object for every ranged GET (moto)",
    )
    s3_max_attempts: int = Field(
        5, ge=1, le=20, description="Attempts per S3 request (botocore standard retries)"
    )
    s3_throttle_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds one S3 request keeps retrying 503 SlowDown / throttling answers",
    )
    s3_checksum: Literal["when_supported", "when_required"] = Field(
        "when_supported",
        description="Flexible checksums; when_required for stores that reject them",
    )
    s3_engine: Literal["auto", "lean", "boto3", "obstore"] = Field(
        "auto",
        description="S3 data engine: obstore (Rust object_store), lean (hand-signed requests), "
        "boto3 (botocore's client), or auto: obstore (lean, or boto3 behind an HTTP proxy, where "
        "obstore is not installed)",
    )
    s3_region: str | None = Field(
        None, description="Region for request signing (default us-east-1)"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines for people or JSON lines"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    progress_min_seconds: float = Field(
        1.0,
        ge=0,
        description="A transfer lasting longer shows progress: a bar on a terminal, JSON events "
        "with HOOK_LOG_FORMAT=json",
    )
    entrypoint: str | None = Field(None, description="module:function, overrides pyproject.toml")
    project_dir: Path | None = Field(
        None, description="The processor project (default: current folder)"
    )
    strict_options: bool = Field(
        False, description="1: an unknown option name is an error (exit 2), not a warning"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


@dataclasses.dataclass(frozen=True)
class OrderContext:
    """Who ordered the run: from the order body or HOOK_ORDER_* variables."""

    identifiers: tuple[str, ...] = ()
    order_id: str | None = None
    order_name: str | None = None
    workflow_name: str | None = None
    priority: int | None = None


@dataclasses.dataclass(frozen=True)
class OptionSources:
    """Where options come from; ``env`` is the whole environment of the run."""

    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    file: Path | None = None
    cli: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, validated."""

    standard: StandardOptions
    platform: PlatformSettings
    order: OrderContext
    workflow: Options | None
    unknown_options: tuple[UnknownOption, ...] = ()
    # Which source's value won where two gave one option (names only), for the run's log.
    overrides: tuple[str, ...] = ()

    @property
    def input_location(self) -> tuple[str, str]:
        from hook_processor._s3url import parse_s3_url

        assert self.standard.input_s3_path is not None
        return parse_s3_url(self.standard.input_s3_path, option="input_s3_path")

    @property
    def output_location(self) -> tuple[str, str]:
        """(bucket, prefix) of the PRIVATE output."""
        assert self.standard.s3_bucket is not None
        return self.standard.s3_bucket, (self.standard.s3_prefix or "").strip("/")

    def secrets(self) -> list[str]:
        """Every secret value of the run, for the log redactor."""
        found = []
        for model in (self.standard, self.platform, self.workflow):
            if model is None:
                continue
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.append(value.get_secret_value())
        return found


def _order_context(
    env: Mapping[str, str], order: Mapping[str, Any], problems: list[str]
) -> OrderContext:
    lowered = {k.lower(): v for k, v in env.items()}
    identifiers: Any = order.get("IdentifierList")
    if identifiers is None and lowered.get("hook_identifiers"):
        try:
            identifiers = json.loads(lowered["hook_identifiers"])
        except json.JSONDecodeError:
            identifiers = None
            problems.append(
                'HOOK_IDENTIFIERS: must be a JSON list of strings, e.g. ["Custom Hook"]'
            )
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if identifiers is not None and not (
        isinstance(identifiers, list) and all(isinstance(i, (str, int)) for i in identifiers)
    ):
        problems.append("IdentifierList: must be a list of product identifiers (strings)")
        identifiers = None
    priority: Any = order.get("Priority", lowered.get("hook_priority"))
    try:
        priority = int(priority) if priority not in (None, "") else None
    except (TypeError, ValueError):
        problems.append("Priority / HOOK_PRIORITY: must be an integer")
        priority = None
    order_id = order.get("Id", lowered.get("hook_order_id"))
    return OrderContext(
        identifiers=tuple(str(i) for i in identifiers or ()),
        order_id=str(order_id) if order_id not in (None, "") else None,
        order_name=order.get("Name") or lowered.get("hook_order_name") or None,
        workflow_name=order.get("WorkflowName") or lowered.get("hook_workflow_name") or None,
        priority=priority,
    )


def _canonical(
    raw: Mapping[str, Any],
    source: str,
    workflow_fields: set[str],
    problems: list[str],
    unknown: list[tuple[str, str]],
) -> tuple[Layer, Layer]:
    """Split one source's options into (standard by canonical name, workflow-specific).

    A ``null`` value (an options file's ``"Value": null``) is not given: it leaves a lower
    source's value in place.
    """
    standard, workflow = Layer(source), Layer(source)
    for given, value in raw.items():
        name = given.strip().lower()
        if name in _ALIAS_TO_STANDARD:
            if value is not None:
                standard.add(_ALIAS_TO_STANDARD[name], given, value, problems)
        elif name in workflow_fields:
            if value is not None:
                workflow.add(name, given, value, problems)
        elif name not in PLATFORM_INJECTED:
            unknown.append((given, source))
    return standard, workflow


def _describe_errors(exc: ValidationError, model: type[BaseSettings], problems: list[str]) -> None:
    for error in exc.errors(include_input=False, include_url=False):
        loc = str(error["loc"][0]) if error["loc"] else ""
        name = _ALIAS_TO_STANDARD.get(loc, loc) if model is StandardOptions else loc
        names = option_aliases(model, name) if name in model.model_fields else [name]
        shown = names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
        if model is PlatformSettings:
            shown = "HOOK_" + names[0].upper()
        problems.append(f"{shown}: {_hint(error, model.model_fields.get(name))}")


def _hint(error: Mapping[str, Any], field: FieldInfo | None) -> str:
    if error["type"] in ("literal_error", "enum"):
        return f"{error['msg']} (case does not matter)"  # true: _choice_in_any_case
    message = str(error["msg"])
    if field is not None and field.description and error["type"] == "missing":
        return f"required: {field.description}"
    return message + json_hint(str(error["type"]))


def platform_settings(env: Mapping[str, str]) -> PlatformSettings:
    """The ``HOOK_*`` settings of ``env``, as a run reads them; OptionsError names a bad one."""
    problems: list[str] = []
    with bound_env(env):
        platform = _validated(PlatformSettings, {}, problems)
    if problems:
        raise OptionsError("the platform settings are not valid: " + "; ".join(problems))
    return cast(PlatformSettings, platform)


def load_config(sources: OptionSources, workflow_model: type[Options] | None = None) -> RunConfig:
    """Read and validate every option of a run; raise one OptionsError listing every problem.

    Unknown option names are in :attr:`RunConfig.unknown_options` (warnings), or among the
    problems when there are others or ``HOOK_STRICT_OPTIONS`` is set.
    """
    from hook_processor._s3url import parse_s3_url

    problems: list[str] = []
    unknown: list[tuple[str, str]] = []
    workflow_fields = set(workflow_model.model_fields) if workflow_model else set()
    file_options: dict[str, Any] = {}
    order: dict[str, Any] = {}
    repeats: list[str] = []
    if sources.file is not None:
        file_options, order = read_options_file(sources.file)
        repeats = options_file_repeats(sources.file)
    file_std, file_wf = _canonical(
        file_options, _option_names.FILE, workflow_fields, problems, unknown
    )
    cli_std, cli_wf = _canonical(sources.cli, _option_names.CLI, workflow_fields, problems, unknown)
    for given, source in _option_names.given_options(sources.env, problems):
        # hook-processor run's names: their values are in the environment; only check the name.
        _canonical({given: None}, source, workflow_fields, problems, unknown)
    # The environment's options are read here like the other sources' (not by pydantic's
    # source, which takes the first of two names silently), so one rule orders all three.
    known = {*_ALIAS_TO_STANDARD, *workflow_fields}
    env_options = {k: v for k, v in sources.env.items() if v != "" and k.lower() in known}
    env_std, env_wf = _canonical(
        env_options, _option_names.ENVIRONMENT, workflow_fields, problems, []
    )
    layers = (env_std, file_std, cli_std)
    for layer in layers:
        split_output_path(layer, parse_s3_url, problems)
    standard_init, origins, overrides = merge(layers)
    workflow_init = merge((file_wf, cli_wf))[0]  # the environment's: read by pydantic
    overrides += merge((env_wf, file_wf, cli_wf))[2]
    overrides += [f"the options file gives {name} twice (same value)" for name in repeats]
    standard, failed = _validated_standard(standard_init, problems)
    with bound_env(sources.env):
        platform = _validated(PlatformSettings, {}, problems)
        workflow = _validated(workflow_model, workflow_init, problems) if workflow_model else None
    context = _order_context(sources.env, order, problems)
    if standard is not None:
        cross_check(standard, platform, problems, failed, origins)
    unknowns = _unknown(unknown, workflow_fields, sources.env)
    strict = platform is not None and platform.strict_options
    if unknowns and (problems or strict):
        problems += [str(u) for u in unknowns]
        if strict:
            problems.append(
                "HOOK_STRICT_OPTIONS=1 refuses unknown names: correct or remove them "
                "(or unset HOOK_STRICT_OPTIONS to have them ignored with a warning)"
            )
    if problems:
        raise OptionsError(
            "the options are not valid; nothing was transferred:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    assert standard is not None and platform is not None
    return RunConfig(
        standard=standard,
        platform=platform,
        order=context,
        workflow=workflow,
        unknown_options=tuple(unknowns),
        overrides=tuple(dict.fromkeys(overrides)),
    )


def _unknown(
    given: list[tuple[str, str]], workflow_fields: set[str], env: Mapping[str, str]
) -> list[UnknownOption]:
    settings = _option_names.hook_settings(PlatformSettings.model_fields)
    known = [*_ALIAS_TO_STANDARD, *workflow_fields]
    return _option_names.unknown_options(given, known, settings, env)


def _validated(model: type[Any], init: dict[str, Any], problems: list[str]) -> Any:
    try:
        return model(**decoded(model, init))
    except ValidationError as exc:
        _describe_errors(exc, model, problems)
        return None


def _validated_standard(
    init: dict[str, Any], problems: list[str]
) -> tuple[StandardOptions | None, set[str]]:
    """The standard options, and the fields that failed: those are left at their defaults, so
    that the rules involving the other options are still checked and reported at once."""
    with bound_env({}):  # every source is in ``init`` already
        try:
            return StandardOptions(**decoded(StandardOptions, init)), set()
        except ValidationError as exc:
            _describe_errors(exc, StandardOptions, problems)
            failed = {
                _ALIAS_TO_STANDARD.get(str(e["loc"][0]), str(e["loc"][0]))
                for e in exc.errors()
                if e["loc"]
            }
        try:
            rest = {k: v for k, v in init.items() if k not in failed}
            return StandardOptions(**decoded(StandardOptions, rest)), failed
        except ValidationError:
            return None, failed
