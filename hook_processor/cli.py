"""The command line: a thin click layer, and the only place that exits.

Commands import their heavy modules inside the function, so that ``hook-processor exec`` (the
container's entrypoint) loads only the runtime.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import click

from hook_processor import __version__
from hook_processor.errors import OptionsError, UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hook-processor")
def main() -> None:
    """Write DestinE Data Lake Hook processors: one function, a runtime, a harness, an image."""


def _option_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    from hook_processor.options import parse_cli_options

    try:
        return parse_cli_options(pairs)
    except OptionsError as exc:
        raise click.BadParameter(str(exc).removeprefix("--option "), param_hint="--option") from None


@main.command("exec")
@click.option(
    "--options-file", type=click.Path(dir_okay=False, path_type=Path),
    help="Order body as POSTed to BatchOrder/OData.CSC.Order, or a {name: value} JSON object.",
)
@click.option(
    "--option", "-o", "options", multiple=True, metavar="NAME=VALUE",
    help="One option; overrides the options file and the environment. Repeatable.",
)
@click.option(
    "--project", type=click.Path(file_okay=False, path_type=Path),
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


def _fail(exc: UserError) -> None:
    """Our user-fixable errors become click's ``Error: ...`` on stderr."""
    exc_ = click.ClickException(str(exc))
    exc_.exit_code = int(exc.exit_code)
    raise exc_ from None
