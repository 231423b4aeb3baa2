"""What hook-processor needs, and for which command: the one list the base image installs.

``pip install hook-processor`` installs everything (pyproject's ``dependencies`` are
:data:`RUNTIME` plus :data:`AUTHOR_TOOLS`; a test keeps the three in step). The container only
runs ``hook-processor exec``, so its base image installs the wheel with ``--no-deps`` and then
:data:`RUNTIME` alone (``python -m hook_processor._dependencies image-install``, run by
Dockerfile.base), and trims the installed metadata to match, so that a processor project whose own
``dependencies`` name ``hook-processor`` does not drag moto, docker and jinja2 into its image.

Standard library only: the base image runs this before any dependency is installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

# What `hook-processor exec` (the runtime) imports; the base image holds these and nothing else.
RUNTIME = (
    "boto3>=1.34",
    "click>=8.1",
    "pydantic>=2.6",
    "pydantic-settings>=2.3",
    "tqdm>=4.66",  # progress bars of stage-in and publish, imported only on a terminal
    "obstore>=0.12",  # the default S3 engine (_s3/obstore_engine.py), imported when it is made
)

# The author's commands beyond exec: {top-level module: the requirement that provides it}.
AUTHOR_TOOLS = {
    "jinja2": "jinja2>=3.1",  # new
    "moto": "moto[server]>=5.0",  # run, the pytest plugin (the embedded S3 server)
    "docker": "docker>=7.0",  # build, run --mode container
    "fastapi": "fastapi>=0.110",  # serve
    "uvicorn": "uvicorn>=0.29",  # serve
    "odata_query": "odata-query>=0.10",  # serve ($filter)
}

# Modules that come with one of the AUTHOR_TOOLS (their own dependencies).
_PROVIDED_BY = {
    "markupsafe": "jinja2",
    "werkzeug": "moto",
    "flask": "moto",
    "flask_cors": "moto",
    "responses": "moto",
    "xmltodict": "moto",
    "starlette": "fastapi",
    "sly": "odata_query",
}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"\bextra\s*==")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement (``moto[server]>=5`` -> moto)."""
    match = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def install_line(module: str) -> str:
    """The ``pip install ...`` that brings ``module`` back (or what to do, for another module)."""
    top = module.split(".")[0]
    tool = AUTHOR_TOOLS.get(_PROVIDED_BY.get(top, top))
    if tool is not None:
        return f"pip install '{tool}'"
    return (
        f"pip install the package that provides {top}, or reinstall hook-processor "
        "without --no-deps"
    )


def missing_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """The whole message for a dependency that is not installed, or None when ``exc`` is about
    hook-processor's own modules (a broken installation or a bug: keep its traceback)."""
    module = exc.name or ""
    if not module or module.split(".")[0] == "hook_processor":
        return None
    return (
        f"hook-processor {command} needs the Python module {module.split('.')[0]}, which is not "
        f"installed here (hook-processor was installed without its dependencies?). "
        f"Install it with: {install_line(module)}"
    )


# --- the base image: the wheel with --no-deps, then RUNTIME only -------------------------------


def trim_metadata(metadata: str) -> str:
    """The METADATA text with only the RUNTIME requirements left among the unconditional ones
    (requirements of an extra stay: nobody asks for those in the image)."""
    keep = {requirement_name(r) for r in RUNTIME}
    lines = []
    for line in metadata.splitlines(keepends=True):
        if line.startswith("Requires-Dist:"):
            requirement = line.split(":", 1)[1]
            if not _EXTRA.search(requirement) and requirement_name(requirement) not in keep:
                continue
        lines.append(line)
    return "".join(lines)


def _rewrite_installed_metadata() -> Path:
    import base64
    import hashlib

    dist = importlib.metadata.distribution("hook-processor")
    files = list(dist.files or ())
    metadata = next(f for f in files if f.name == "METADATA" and f.parent.name.endswith("-info"))
    record = next(f for f in files if f.name == "RECORD" and f.parent == metadata.parent)
    metadata_path = Path(str(dist.locate_file(metadata)))
    data = trim_metadata(metadata_path.read_text(encoding="utf-8")).encode("utf-8")
    metadata_path.write_bytes(data)
    # RECORD lists each file's hash: keep it true for the file just changed.
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record_path = Path(str(dist.locate_file(record)))
    rows = []
    for row in record_path.read_text(encoding="utf-8").splitlines():
        if row.split(",", 1)[0] == metadata.as_posix():
            row = f"{metadata.as_posix()},sha256={digest},{len(data)}"
        rows.append(row)
    record_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return metadata_path


def image_install(pip_args: list[str]) -> None:
    """Install RUNTIME next to an hook-processor installed with ``--no-deps``; trim its metadata."""
    subprocess.run([sys.executable, "-m", "pip", "install", *pip_args, *RUNTIME], check=True)
    _rewrite_installed_metadata()


if __name__ == "__main__":
    # python -m hook_processor._dependencies image-install [pip options]   (Dockerfile.base)
    if sys.argv[1:2] != ["image-install"]:
        sys.exit("usage: python -m hook_processor._dependencies image-install [pip options]")
    image_install(sys.argv[2:])
