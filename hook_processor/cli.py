"""The command line: a thin click layer, and the only place that exits.

Commands import their heavy modules inside the function, so that ``hook-processor exec`` (the
container's entrypoint) loads only the runtime.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hook_processor import __version__
from hook_processor.errors import ExitCode, OptionsError, UserError

# Commands other than exec live in their own modules, imported only when invoked (or listed),
# so that the container's entrypoint never pays for the harness, docker or jinja2.
_LAZY_COMMANDS = {
    "run": "hook_processor._cli_run:run_command",
    "new": "hook_processor._cli_project:new_command",
    "describe": "hook_processor._cli_project:describe_command",
    "build": "hook_processor._cli_build:build_command",
    "serve": "hook_processor._cli_serve:serve_command",
    "order": "hook_processor._cli_order:order_group",
    "export": "hook_processor._cli_export:export_group",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name in _LAZY_COMMANDS if self._lazy(name) is not None]
        return sorted([*super().list_commands(ctx), *available])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            # A dependency missing (an install with --no-deps): one Error line with the fix and
            # exit 2, not a traceback. hook-processor's own modules keep their traceback.
            from hook_processor._dependencies import missing_message

            command = ctx.invoked_subcommand or "this command"
            message = missing_message(command, exc)
            if message is None:
                raise
            raise command_error(message, ExitCode.BAD_OPTIONS) from None

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


_F = TypeVar("_F", bound=Callable[..., Any])


def project_argument(command: _F) -> _F:
    """``PROJECT_DIR`` as an argument and as ``--project``: either form works (see
    :func:`project_from`)."""
    command = click.option(
        "--project",
        "project_option",
        type=click.Path(file_okay=False, path_type=Path),
        help="The processor project; the same as the PROJECT_DIR argument.",
    )(command)
    return click.argument(
        "project_dir", required=False, type=click.Path(file_okay=False, path_type=Path)
    )(command)


def project_from(argument: Path | None, option: Path | None) -> Path | None:
    """The project folder given as PROJECT_DIR or --project (both only when they agree)."""
    if argument is not None and option is not None and argument.resolve() != option.resolve():
        raise click.UsageError(
            f"PROJECT_DIR {argument} and --project {option} name different folders; give one"
        )
    return argument if argument is not None else option


@main.command("exec", short_help="Run the processor once, as the Hook service does.")
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
@project_argument
def exec_command(
    options_file: Path | None,
    options: tuple[str, ...],
    project_dir: Path | None,
    project_option: Path | None,
) -> None:
    """Run the processor in PROJECT_DIR once, as the Hook service does: the container's
    entrypoint. PROJECT_DIR (or --project) defaults to HOOK_PROJECT_DIR or the current folder.

    Options come from --option, --options-file and the environment (in that order of
    precedence). The exit code says what happened: 0 completed, 2 bad options, 3 staging
    failed, 4 process() raised, 5 publication failed, 6 cancelled.
    """
    from hook_processor._console import exec_once

    project = project_from(project_dir, project_option)
    exec_once(options_file, _option_pairs(options), project)


class CommandError(click.ClickException):
    """click's ``Error: MESSAGE`` with one of our exit codes (:func:`command_error` makes one)."""


@functools.cache
def _command_error_class(code: int) -> type[CommandError]:
    # click declares ``exit_code`` a class variable: one subclass per code, not an assignment
    # to the instance.
    class _CommandError(CommandError):
        exit_code = code

    _CommandError.__name__ = _CommandError.__qualname__ = f"CommandError{code}"
    return _CommandError


def command_error(message: str, exit_code: int) -> CommandError:
    """An error click prints as ``Error: MESSAGE`` and exits with ``exit_code``."""
    return _command_error_class(int(exit_code))(message)


def fail(exc: UserError) -> CommandError:
    """Turn one of our user-fixable errors into click's ``Error: ...`` with the error's exit code.

    Used by every command module: ``except UserError as exc: raise fail(exc) from None``.
    """
    return command_error(str(exc), exc.exit_code)
