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

The wheel's *content digest* (file names and bytes, not zip timestamps) labels the base image, so
an unchanged hook-processor reuses its base image and a changed one rebuilds it.
"""

from __future__ import annotations

import base64
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
from pathlib import Path

import hook_processor
from hook_processor.errors import ContainerError

CA_BUNDLE_NAME = "ca-bundle.pem"
CA_ENV_NAMES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
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


def wheel_digest(wheel: Path) -> str:
    """sha256 of a wheel's file names and contents (zip timestamps do not count)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(info.filename.encode() + b"\0" + archive.read(info) + b"\0")
    return digest.hexdigest()


# --- the processor's build context ----------------------------------------------------------


def dockerignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def project_context(root: Path, dockerfile: str, ca_bundle: bytes | None) -> tuple[io.BytesIO, str]:
    """The build context as a tar (``.dockerignore`` applied, ``ca-bundle.pem`` added when given)
    and a digest of what the image is built from (paths, modes, contents; not the bundle)."""
    from docker.utils.build import exclude_paths

    included = sorted(exclude_paths(str(root), dockerignore_patterns(root), dockerfile=dockerfile))
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
