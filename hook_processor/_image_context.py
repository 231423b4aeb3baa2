"""What goes into a docker build: the hook-processor wheel, Dockerfile.base, the CA bundle, the
project's build context. No docker import here (the SDK is only needed to send it).

**The wheel of the running hook-processor** (the base image installs it; hook-processor need not be
on any index), found in this order:

1. a source tree: the package sits in a folder whose ``pyproject.toml`` is hook-processor's (a
   checkout, an editable install): ``python -m pip wheel --no-deps`` of that folder;
2. an editable install whose ``direct_url.json`` names its source folder: the same;
3. an installed distribution (from a wheel or an index): its files, listed in its ``RECORD``, are
   packed back into a wheel (same files, a fresh ``RECORD``; the console script is regenerated from
   ``entry_points.txt`` when the base image installs it).

The base image is labelled with a *package digest* (:func:`package_digest`): the package's files
and bytes, its version, dependencies and entry points, never the zip's timestamps, ``RECORD`` or
``WHEEL``. Those differ between a wheel built from a source tree and one packed back from an
installed distribution, so keying on them made switching between an editable install and a wheel
install of the same source rebuild an identical base image.

**The Python image** the base is built on (:func:`python_image_choice`): ``--python-image``, else
``HOOK_PYTHON_IMAGE``, else ``python_image`` in the project's ``[tool.hook-processor]``, else the
default of Dockerfile.base. Offline and air-gapped machines set it once.

**The processor's build context** (:func:`project_context`) leaves out, on top of
``.dockerignore``, every folder that holds the marker of a ``hook-processor run`` output or of an
``exec`` work folder, whatever its name: run outputs must neither reach ``/app`` nor make an
unchanged project look changed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping
from pathlib import Path

import hook_processor
from hook_processor.errors import ContainerError

CA_BUNDLE_NAME = "ca-bundle.pem"
CA_ENV_NAMES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PYTHON_IMAGE_ENV = "HOOK_PYTHON_IMAGE"
PYTHON_IMAGE_KEY = "python_image"  # of [tool.hook-processor]
# A folder holding one of these is the output of `hook-processor run` (harness) or an `exec` work
# folder (runtime): never part of an image. (Names repeated: no harness/runtime import here.)
RUN_MARKERS = (".hook-processor-run.json", ".hook-processor-workdir")
_PACKAGE_DIR = Path(hook_processor.__file__).resolve().parent
_DIST_INFO_SKIP = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def dockerfile_base() -> Path:
    """Dockerfile.base: package data of an installed wheel, or the file at a checkout's top."""
    for candidate in (
        _PACKAGE_DIR / "_data" / "Dockerfile.base",
        _PACKAGE_DIR.parent / "Dockerfile.base",
    ):
        if candidate.is_file():
            return candidate
    raise ContainerError(
        "Dockerfile.base is missing from this hook-processor installation; reinstall hook-processor"
    )


def default_python_image() -> str:
    """The default of Dockerfile.base's ``ARG PYTHON_IMAGE`` (one source of truth)."""
    for line in dockerfile_base().read_text(encoding="utf-8").splitlines():
        if line.startswith("ARG PYTHON_IMAGE="):
            return line.split("=", 1)[1].strip()
    return "python:3.11-slim"


@dataclasses.dataclass(frozen=True)
class PythonImage:
    image: str
    source: str  # where it came from, for messages: "--python-image", "HOOK_PYTHON_IMAGE", ...

    @property
    def is_default(self) -> bool:
        return self.source == "default"


def python_image_choice(
    explicit: str | None = None,
    project_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> PythonImage:
    """The Python image of the base image: ``--python-image``, else ``HOOK_PYTHON_IMAGE``, else
    ``python_image`` of the project's ``[tool.hook-processor]``, else Dockerfile.base's default."""
    if explicit and explicit.strip():
        return PythonImage(explicit.strip(), "--python-image")
    env = os.environ if environ is None else environ
    if env.get(PYTHON_IMAGE_ENV, "").strip():
        return PythonImage(env[PYTHON_IMAGE_ENV].strip(), PYTHON_IMAGE_ENV)
    if project_dir is not None:
        from hook_processor.loader import read_project

        configured = read_project(project_dir).python_image
        if configured:
            return PythonImage(
                configured, f"{PYTHON_IMAGE_KEY} in [tool.hook-processor] of pyproject.toml"
            )
    return PythonImage(default_python_image(), "default")


def find_ca_bundle(
    explicit: Path | None = None, environ: dict[str, str] | None = None
) -> Path | None:
    """--ca-bundle, else the bundle the host's pip uses (PIP_CERT, REQUESTS_CA_BUNDLE,
    SSL_CERT_FILE)."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ContainerError(f"--ca-bundle {explicit}: no such file")
        return Path(explicit)
    env = os.environ if environ is None else environ
    for name in CA_ENV_NAMES:
        value = env.get(name, "").strip()
        if value and Path(value).is_file() and Path(value).stat().st_size > 0:
            return Path(value)
    return None


# --- the hook-processor wheel -----------------------------------------------------------------


def source_tree() -> Path | None:
    """The folder of hook-processor's own pyproject.toml, when running from a source tree."""
    candidates = [_PACKAGE_DIR.parent]
    try:
        direct = importlib.metadata.distribution("hook-processor").read_text("direct_url.json")
        info = json.loads(direct or "{}")
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file://"):
            candidates.append(Path(info["url"].removeprefix("file://")))
    except importlib.metadata.PackageNotFoundError:
        pass
    for root in candidates:
        try:
            data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if (
            data.get("project", {}).get("name") == "hook-processor"
            and (root / "hook_processor").is_dir()
        ):
            return root
    return None


def build_wheel(dest: Path) -> Path:
    """A wheel of the running hook-processor in ``dest`` (see the module docstring)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = source_tree()
    if root is None:
        return repack_installed(importlib.metadata.distribution("hook-processor"), dest)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(dest),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wheels = sorted(dest.glob("hook_processor-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ContainerError(
            f"could not build the hook-processor wheel from {root} (pip wheel):\n{tail}"
        )
    return wheels[0]


def repack_installed(dist: importlib.metadata.Distribution, dest: Path) -> Path:
    """Pack an installed distribution back into a wheel (its RECORD lists every file)."""
    files = [f for f in dist.files or () if _keep(f)]
    dist_info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if not files or dist_info is None:
        raise ContainerError(
            "cannot find the installed files of hook-processor to build the base image from; "
            "reinstall it (pip install --force-reinstall hook-processor)"
        )
    wheel_meta = (dist.read_text("WHEEL") or "").splitlines()
    tag = next(
        (line.split(":", 1)[1].strip() for line in wheel_meta if line.startswith("Tag:")),
        "py3-none-any",
    )
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"hook_processor-{dist.version}-{tag}.whl"
    record: list[str] = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for file in sorted(files, key=str):
            data = Path(str(dist.locate_file(file))).read_bytes()
            name = file.as_posix()
            wheel.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        wheel.writestr(
            zipfile.ZipInfo(f"{dist_info}/RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n"
        )
    return path


def _keep(file: importlib.metadata.PackagePath) -> bool:
    parts = file.parts
    if not parts or parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
        return False
    return not (parts[0].endswith(".dist-info") and parts[-1] in _DIST_INFO_SKIP)


def package_digest(wheel: Path) -> str:
    """sha256 of what a wheel installs: the package's file names and bytes, its name, version,
    dependencies and entry points. Not the zip's timestamps, ``RECORD`` (its order and format
    depend on who wrote it), ``WHEEL`` (the generator's version) or the rest of ``METADATA``: the
    same source gives the same digest from a source tree and from an installed distribution."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            top, _, name = info.filename.partition("/")
            if info.is_dir():
                continue
            if not top.endswith(".dist-info"):
                data = archive.read(info)
            elif name == "METADATA":
                data = _install_metadata(archive.read(info).decode("utf-8", "replace"))
            elif name == "entry_points.txt":
                lines = archive.read(info).decode().splitlines()
                data = "\n".join(line.strip() for line in lines if line.strip()).encode()
            else:
                continue  # RECORD, WHEEL, licenses: not what the base image runs
            digest.update(info.filename.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _install_metadata(text: str) -> bytes:
    """The METADATA fields that change what is installed (the headers end at the first blank)."""
    fields = ("name", "version", "requires-python", "requires-dist", "provides-extra")
    headers = text.split("\n\n", 1)[0].splitlines()
    kept = sorted(
        " ".join(line.split()) for line in headers if line.split(":", 1)[0].lower() in fields
    )
    return "\n".join(kept).encode()


# --- the processor's build context ----------------------------------------------------------


def dockerignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def project_context(
    root: Path, dockerfile: str, ca_bundle: bytes | None, skipped: list[str] | None = None
) -> tuple[io.BytesIO, str]:
    """The build context as a tar (``.dockerignore`` applied, run outputs left out,
    ``ca-bundle.pem`` added when given) and a digest of what the image is built from (paths,
    modes, contents; not the bundle). The run-output folders left out go into ``skipped``."""
    from docker.utils.build import exclude_paths

    included = sorted(exclude_paths(str(root), dockerignore_patterns(root), dockerfile=dockerfile))
    outputs = sorted({str(Path(p).parent) for p in included if Path(p).name in RUN_MARKERS} - {"."})
    if outputs:
        prefixes = tuple(f"{folder}/" for folder in outputs)
        included = [p for p in included if p not in outputs and not p.startswith(prefixes)]
        if skipped is not None:
            skipped.extend(f"{folder}/" for folder in outputs)
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in included:
            if relative == CA_BUNDLE_NAME:
                continue  # the project's own file of that name would be replaced anyway
            full = root / relative
            info = tar.gettarinfo(str(full), arcname=relative)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            digest.update(f"{relative}\0{info.type!r}\0{info.mode & 0o111}\0".encode())
            if info.isreg():
                data = full.read_bytes()
                digest.update(data)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
        if ca_bundle is not None:
            info = tarfile.TarInfo(CA_BUNDLE_NAME)
            info.size, info.mode = len(ca_bundle), 0o644
            tar.addfile(info, io.BytesIO(ca_bundle))
    buffer.seek(0)
    return buffer, digest.hexdigest()
