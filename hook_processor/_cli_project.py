"""``hook-processor new`` and ``hook-processor describe``: the project commands (loaded lazily)."""

from __future__ import annotations

from pathlib import Path

import click

from hook_processor.cli import fail
from hook_processor.errors import UserError


@click.command("new", short_help="Create a processor project: code, tests, sample, Dockerfile.")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create the project in (created if missing).",
)
@click.option("--description", metavar="TEXT", help="One line for the workflow's Description.")
@click.option("--force", is_flag=True, help="Write into an existing non-empty folder.")
def new_command(name: str, parent: Path, description: str | None, force: bool) -> None:
    """Create the processor project NAME: code, tests, sample input, Dockerfile, README.

    NAME is the Hook workflow name: lowercase letters, digits, '_' and '-', starting with a
    letter; the Python package is NAME with '-' replaced by '_'.
    """
    from hook_processor.scaffold import new

    try:
        target = new(name, parent, description=description, force=force)
    except UserError as exc:
        raise fail(exc) from None
    shown = _shown(target)
    click.echo(f"Created {shown}. Next:")
    click.echo(f"  cd {shown}")
    click.echo('  pip install -e ".[test]"')
    click.echo("  hook-processor run . --input sample/input --output out   # run it locally")
    click.echo("  pytest                                                   # test it")
    click.echo("  hook-processor build                                     # build its image")


@click.command("describe", short_help="Print the workflow entry and its options.")
@click.argument(
    "project_dir",
    required=False,
    default=Path("."),
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: for people; json: the Workflow entry exactly as the Hook API lists it.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="The same as --format json (as `run --json`)."
)
def describe_command(project_dir: Path, fmt: str, as_json: bool) -> None:
    """Print the project's Workflow entry with its WorkflowOptions.

    --format json prints it in the shape the Hook API returns for
    Workflows?$expand=WorkflowOptions: the standard options and the processor's own.
    """
    from hook_processor.describe import describe_project, to_json, to_table
    from hook_processor.loader import read_project

    try:
        entry = describe_project(project_dir)
    except UserError as exc:
        raise fail(exc) from None
    if fmt == "json" or as_json:
        click.echo(to_json(entry))
    else:
        click.echo(to_table(entry, stac_catalog=read_project(project_dir).stac_catalog))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
