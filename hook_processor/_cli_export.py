"""``hook-processor export argo``: the processor as an Argo WorkflowTemplate (loaded lazily; the
only importer of hera and PyYAML, ``hook-processor[argo]``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from hook_processor.cli import fail, project_argument, project_from
from hook_processor.errors import UserError


@click.group("export", short_help="Export the processor to another engine (Argo Workflows).")
def export_group() -> None:
    """Export the processor to another engine: `export argo` writes an Argo WorkflowTemplate."""


@export_group.command("argo", short_help="Write the processor as an Argo WorkflowTemplate.")
@project_argument
@click.option(
    "--image",
    metavar="IMAGE",
    help="The image the template runs. With PROJECT_DIR: only its reference (default: the tag "
    "hook-processor build gives, name:version). Alone: an image in the local Docker engine, "
    "whose labels give the workflow and its options.",
)
@click.option("--namespace", metavar="NS", help="metadata.namespace of the template.")
@click.option(
    "--secret",
    metavar="NAME",
    help="The Kubernetes Secret holding the secret options, one key per option name "
    "(default: <template name>-secrets).",
)
@click.option(
    "--parallelism",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Items running at once.",
)
@click.option(
    "--deadline",
    "deadline_seconds",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="activeDeadlineSeconds of one attempt of an item.",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the template to FILE (JSON when it ends in .json, else YAML) instead of stdout.",
)
def argo_command(
    project_dir: Path | None,
    project_option: Path | None,
    image: str | None,
    namespace: str | None,
    secret: str | None,
    parallelism: int,
    deadline_seconds: int,
    output: Path | None,
) -> None:
    """Write the processor in PROJECT_DIR (default: the current folder) as an Argo Workflows
    v4.0 WorkflowTemplate: one pod of its image per identifier of the `identifiers` parameter,
    its options as workflow parameters, its secret options from a Kubernetes Secret.

    Without PROJECT_DIR, --image names an image of the local Docker engine built by
    hook-processor build. Nothing is sent to a cluster: apply the file with `argo template
    create FILE` (or kubectl apply -f FILE).
    """
    from hook_processor.export import _source
    from hook_processor.export.argo import ArgoExport, workflow_template

    project = project_from(project_dir, project_option)
    try:
        if project is None and image is not None:
            entry, reference, user = _source.from_image(image)
        else:
            entry, reference, user = _source.from_project(project or Path("."), image)
        document = workflow_template(
            ArgoExport(
                entry=entry,
                image=reference,
                user=user,
                namespace=namespace,
                secret=secret,
                parallelism=parallelism,
                deadline_seconds=deadline_seconds,
            )
        )
    except UserError as exc:
        raise fail(exc) from None
    as_json = output is not None and output.suffix.lower() == ".json"
    text = (
        json.dumps(document, indent=2, ensure_ascii=False) + "\n" if as_json else to_yaml(document)
    )
    if output is None:
        click.echo(text, nl=False)
        return
    _write(output, text)
    name = document["metadata"]["name"]
    click.echo(
        f"wrote {output}: WorkflowTemplate {name} (Argo Workflows v4.0), image {reference}",
        err=True,
    )


def to_yaml(document: dict[str, Any]) -> str:
    """YAML with multi-line strings (the plan step's source) as literal blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    dumped: str = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return dumped


def _write(path: Path, text: str) -> None:
    """The whole file or nothing: a temporary file beside it, renamed over it."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise click.BadParameter(
            f"{path}: its folder {parent} does not exist; create it first", param_hint="-o"
        )
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make the file unreadable to others
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
