"""The check ``hook-processor run`` makes before it moves any data: would ``exec`` refuse this run?

It does what the runtime does before its stage-in, and nothing more: load the project and its
entrypoint (pyproject, import, signature) and validate the options exactly as ``exec`` will get
them (the run's environment). The harness calls :func:`check` in its own process for the
``inprocess`` mode; ``python -m hook_processor._preflight`` is the same check in a child process
(``subprocess`` mode) or in the image (``container`` mode), so that the project is imported only
where it will run. Light, like the runtime: no harness, moto or docker here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from hook_processor.errors import ExitCode, OptionsError

MARKER = "hook-processor-check:"  # the child's verdict, one JSON line on stdout after this


class Refused(OptionsError):
    """The runtime would refuse this run (exit 2): the message is its StatusMessage."""


def check(env: Mapping[str, str], project_dir: Path | None = None) -> None:
    """Raise :class:`Refused` if ``exec`` with this environment would stop with exit 2."""
    from hook_processor import _log, runtime
    from hook_processor.options import OptionSources, load_config

    sources = OptionSources(env=dict(env))
    secrets = runtime._raw_secrets(sources)  # a message never shows a secret value
    # Whatever the load logs is said again by the run itself: nothing of it here.
    logger = logging.getLogger(_log.LOGGER_NAME)
    quiet, propagate = logging.NullHandler(), logger.propagate
    logger.addHandler(quiet)
    logger.propagate = False
    try:
        _project, processor = runtime._load(sources.env, project_dir)
        load_config(sources, processor.options_model)
    except OptionsError as exc:
        raise Refused(_log.redact(str(exc).strip(), secrets)) from None
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate


def main() -> int:
    """The check in this process's environment; prints the verdict after :data:`MARKER`."""
    try:
        check(os.environ)  # the project: HOOK_PROJECT_DIR or the current folder, as for exec
    except Refused as exc:
        verdict: dict[str, object] = {"ExitCode": int(exc.exit_code), "Message": str(exc)}
    else:
        verdict = {"ExitCode": int(ExitCode.COMPLETED)}
    sys.stdout.flush()
    print(MARKER + json.dumps(verdict, ensure_ascii=False), flush=True)
    return 0


def read_verdict(output: str) -> Refused | None:
    """The :class:`Refused` the child printed (None: the check passed or could not run)."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER) :])
            except ValueError:
                return None
            if data.get("ExitCode") == ExitCode.BAD_OPTIONS:
                return Refused(str(data.get("Message", "")))
            return None
    return None


if __name__ == "__main__":
    sys.exit(main())
