"""The command line: a thin click layer, and the only place that exits.

Commands import their heavy modules inside the function, so that ``hook-processor exec`` (the
container's entrypoint) loads only the runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path

import click

from hook_processor import __version__
from hook_processor.errors import OptionsError, UserError

# Commands other than exec live in their own modules, imported only when invoked (or listed),
# so that the container's entrypoint never pays for the harness, docker or jinja2.
_LAZY_COMMANDS = {
    "run": "hook_processor._cli_run:run_command",
    "new": "hook_processor._cli_project:new_command",
    "describe": "hook_processor._cli_project:describe_command",
    "build": "hook_processor._cli_build:build_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name in _LAZY_COMMANDS if self._lazy(name) is not None]
        return sorted([*super().list_commands(ctx), *available])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    @staticmethod
    def _lazy(name: str) -> click.Command | None:
        target = _LAZY_COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        if importlib.util.find_spec(module_name) is None:
            return None  # not written yet in this version
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="hook-processor")
def main() -> None:
    """Write DestinE Data Lake Hook processors: one function, a runtime, a harness, an image."""


def _option_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from hook_processor.options import parse_cli_options

    try:
        return parse_cli_options(pairs)
    except OptionsError as exc:
        raise click.BadParameter(
            str(exc).removeprefix("--option "), param_hint="--option"
        ) from None


@main.command("exec")
@click.option(
    "--options-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Order body as POSTed to BatchOrder/OData.CSC.Order, or a {name: value} JSON object.",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="One option; overrides the options file and the environment. Repeatable.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    help="The processor project (default: HOOK_PROJECT_DIR or the current folder).",
)
def exec_command(options_file: Path | None, options: tuple[str, ...], project: Path | None) -> None:
    """Run the processor once, as the Hook service does: the container's entrypoint.

    Options come from --option, --options-file and the environment (in that order of
    precedence). The exit code says what happened: 0 completed, 2 bad options, 3 staging
    failed, 4 process() raised, 5 publication failed, 6 cancelled.
    """
    from hook_processor import runtime
    from hook_processor.options import OptionSources

    sources = OptionSources(env=dict(os.environ), file=options_file, cli=_option_pairs(options))
    cancel = threading.Event()
    phase = runtime._Phase()
    runtime.install_signal_handlers(cancel, phase)
    result = runtime.run(sources, project_dir=project, cancel=cancel, phase=phase)
    sys.exit(int(result.exit_code))


def fail(exc: UserError) -> click.ClickException:
    """Turn one of our user-fixable errors into click's ``Error: ...`` with the error's exit code.

    Used by every command module: ``except UserError as exc: raise fail(exc) from None``.
    """
    error = click.ClickException(str(exc))
    error.exit_code = int(exc.exit_code)
    return error
