"""The ``hook-processor`` console script: a plain ``exec`` without click, the rest through it.

``hook-processor exec`` is the container's entrypoint and starts once per order item: click and
the command table cost ~30 ms of its start before the first S3 request (BENCHMARKS.md, issue 11's
0.3 s target). So an ``exec`` command line made only of ``PROJECT_DIR`` / ``--project DIR``,
``--options-file FILE`` and ``--option`` / ``-o NAME=VALUE``, each well formed, runs the runtime
directly. Any other command line (``--help``, a flag not listed here, a missing value, an option
that does not parse, a folder where a file belongs) goes to click, which says what is wrong as it
always has: the fast path never decides an error.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# The flags the fast path takes, each with a value: "--flag VALUE", and "--flag=VALUE" for the
# long ones (click reads "-o=X" as the value "=X": that goes to click).
_LONG = {"--project": "project", "--options-file": "options_file", "--option": "option"}
_VALUED = {**_LONG, "-o": "option"}


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["exec"]:
        plain = _plain_exec(argv[1:])
        if plain is not None:
            exec_once(*plain)  # exits
    from hook_processor.cli import main as click_main

    click_main()


def _plain_exec(args: list[str]) -> tuple[Path | None, dict[str, str], Path | None] | None:
    """(options file, --option pairs, project) of a plain exec command line, else None."""
    found: dict[str, list[str]] = {"project": [], "options_file": [], "option": []}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _LONG and eq:
            found[_LONG[name]].append(value)
        elif arg in _VALUED:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            found[_VALUED[arg]].append(args[i + 1])
            i += 1
        elif arg.startswith("-") or positional:
            return None  # a flag of click's (--help ...), "--", or a second PROJECT_DIR
        else:
            positional.append(arg)
        i += 1
    if len(found["project"]) > 1 or len(found["options_file"]) > 1:
        return None
    project_arg = Path(positional[0]) if positional else None
    project_opt = Path(found["project"][0]) if found["project"] else None
    if project_arg is not None and project_opt is not None:
        return None  # click says whether they agree
    project = project_arg or project_opt
    if project is not None and project.exists() and not project.is_dir():
        return None
    options_file = Path(found["options_file"][0]) if found["options_file"] else None
    if options_file is not None and options_file.is_dir():
        return None
    try:
        from hook_processor.errors import OptionsError
        from hook_processor.options import parse_cli_options

        pairs = parse_cli_options(tuple(found["option"]))
    except (OptionsError, ModuleNotFoundError):
        return None  # click says what is wrong (or which dependency is missing)
    return options_file, pairs, project


def exec_once(options_file: Path | None, pairs: dict[str, str], project: Path | None) -> None:
    """Run the processor once, as ``hook-processor exec`` does, and exit with the run's code."""
    from hook_processor import runtime
    from hook_processor.options import OptionSources

    sources = OptionSources(env=dict(os.environ), file=options_file, cli=pairs)
    cancel = threading.Event()
    phase = runtime._Phase()
    runtime.install_signal_handlers(cancel, phase)
    result = runtime.run(sources, project_dir=project, cancel=cancel, phase=phase)
    runtime.ignore_signals_once_finished()  # the result is written: its exit code is final
    sys.exit(int(result.exit_code))
