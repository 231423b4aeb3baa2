"""Unknown option names: which names a run knows, and the nearest known name of one it does not.

A misspelled option is worse than a wrong one: it passes validation and the run goes on with the
default. So every name the run was *given* (the options file, ``--option``, and the names that
``hook-processor run`` hands over in ``HOOK_GIVEN_OPTIONS``) that is neither a standard option,
nor one the processor declares, nor one the platform injects, is reported once, with the closest
known name. The environment holds everything, so its variables are not options; only a ``HOOK_*``
variable that closely resembles a known setting (``HOOK_CONCURENCY``) is reported, since the
``HOOK_`` prefix is shared with other tools (the DEDL tutorial's ``HOOK_DATA_ID``, our scripts').
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

# Set by hook-processor run: the names (never values) of the options its sources gave, as a JSON
# list of [name, source]. The run's options reach the runtime as environment variables, where an
# unknown name can no longer be told from any other variable; the runtime, which knows the
# processor's options model, reports them (so each is named once, in every mode).
GIVEN_OPTIONS = "HOOK_GIVEN_OPTIONS"
FILE, CLI, ENVIRONMENT = "the options file", "--option", "the environment"

# HOOK_* variables the runtime reads besides PlatformSettings, and those other commands read;
# given_options and progress_events are internal, set by hook-processor run for its child.
_ORDER_SETTINGS = ("order_id", "order_name", "workflow_name", "identifiers", "priority")
_OTHER_SETTINGS = (
    "given_options",
    "python_image",
    "progress_events",
    # hook-processor order (the client of a Hook service)
    "service_url",
    "token_url",
    "access_token",
)
_OPTION_CUTOFF = 0.6  # difflib's default
_SETTING_CUTOFF = 0.75  # higher: only a likely typo of a setting, not another tool's variable


@dataclasses.dataclass(frozen=True)
class UnknownOption:
    """A name the run was given but does not know."""

    name: str
    source: str
    suggestion: str | None = None
    note: str | None = None

    def __str__(self) -> str:
        kind = "setting" if self.source == ENVIRONMENT else "option"
        details = [f"from {self.source}"]
        if self.note:
            details.append(self.note)
        elif self.suggestion:
            details.append(f"did you mean {self.suggestion!r}?")
        return f"unknown {kind} {self.name!r} ({'; '.join(details)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Source": self.source,
            "Suggestion": self.suggestion,
            "Message": str(self),
        }


def hook_settings(platform_fields: Iterable[str]) -> frozenset[str]:
    """Every known ``HOOK_*`` variable, upper case."""
    names = (*platform_fields, *_ORDER_SETTINGS, *_OTHER_SETTINGS)
    return frozenset(f"HOOK_{n.upper()}" for n in names)


def given_options(env: Mapping[str, str], problems: list[str]) -> list[tuple[str, str]]:
    """The ``(name, source)`` pairs of ``HOOK_GIVEN_OPTIONS``, if the environment has it."""
    raw = next((v for k, v in env.items() if k.upper() == GIVEN_OPTIONS), None)
    if not raw:
        return []
    try:
        pairs = json.loads(raw)
        if isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in pairs
        ):
            return [(name, source) for name, source in pairs]
    except ValueError:
        pass
    problems.append(
        f"{GIVEN_OPTIONS}: set by hook-processor run, a JSON list of [name, source], e.g. "
        '[["s3_bucket", "--option"]]; unset it'
    )
    return []


def encode_given(names: Iterable[tuple[str, str]]) -> str:
    return json.dumps([[name, source] for name, source in names])


def unknown_options(
    given: Iterable[tuple[str, str]],
    option_names: Iterable[str],
    settings: frozenset[str],
    env: Mapping[str, str],
) -> list[UnknownOption]:
    """The unknown names of ``given`` (first source only) and the near-miss HOOK_* variables."""
    options = {n.lower(): n for n in option_names}
    settings_by_key = {s.lower(): s for s in settings}
    candidates = {**options, **settings_by_key}
    found: list[UnknownOption] = []
    seen: set[str] = set()
    for name, source in given:
        key = name.strip().lower()
        if key in seen:
            continue
        seen.add(key)
        if key in settings_by_key:
            setting = settings_by_key[key]
            note = f"{setting} is a platform setting: set it in the environment"
            found.append(UnknownOption(name, source, setting, note))
        else:
            found.append(UnknownOption(name, source, _nearest(key, candidates, _OPTION_CUTOFF)))
    suffixes = {s.lower().removeprefix("hook_"): s for s in settings}
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith("HOOK_") or upper in settings or upper.lower() in seen:
            continue
        nearest = _nearest(upper.lower().removeprefix("hook_"), suffixes, _SETTING_CUTOFF)
        if nearest is not None:
            found.append(UnknownOption(name, ENVIRONMENT, nearest))
    return found


def _nearest(key: str, candidates: Mapping[str, str], cutoff: float) -> str | None:
    match = difflib.get_close_matches(key, list(candidates), n=1, cutoff=cutoff)
    return candidates[match[0]] if match else None
