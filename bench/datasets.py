"""Deterministic benchmark data sets, generated locally from a seed (random bytes, incompressible).

Each data set lives in ``<data_dir>/<name>[@<scale>]/tree`` with a ``manifest.json`` beside it
(relative path -> size, md5), written last: a data set is regenerated only when its manifest is
missing or describes another spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

SPEC_VERSION = 1
CHUNK = 8 * 1024 * 1024
KiB = 1024
MiB = 1024 * 1024

NAMES = ("safe_like", "many_small", "one_big")


@dataclass(frozen=True)
class Dataset:
    name: str
    scale: float
    root: Path  # the folder that is transferred
    files: dict[str, tuple[int, str]]  # relative posix path -> (size, md5 hex)

    @property
    def bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    @property
    def count(self) -> int:
        return len(self.files)


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _scaled(size: int, scale: float) -> int:
    return max(1, round(size * scale))


# --- layouts: relative path -> size, before scaling ---------------------------------------------

_SAFE = "S2B_MSIL2A_20240612T103629_N0510_R008_T32TQM_20240612T134512.SAFE"
_GRANULE = f"{_SAFE}/GRANULE/L2A_T32TQM_A037929_20240612T103843"
_DS = f"{_SAFE}/DATASTRIP/DS_2BPS_20240612T134512_S20240612T103843"
_TILE = "T32TQM_20240612T103629"
_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def _safe_like(scale: float) -> dict[str, int]:
    """≈300 files, ≈600 MB: 35 band rasters (1–75 MB) and ≈265 small XML/GML/metadata files."""
    rng = random.Random(_seed("safe_like", "layout", SPEC_VERSION))

    def jitter(size: int) -> int:
        return int(size * rng.uniform(0.85, 1.15))

    big: dict[str, int] = {}
    img = f"{_GRANULE}/IMG_DATA"
    for band in ("B02", "B03", "B04", "B08"):
        big[f"{img}/R10m/{_TILE}_{band}_10m.jp2"] = jitter(68 * MiB)
    big[f"{img}/R10m/{_TILE}_TCI_10m.jp2"] = jitter(48 * MiB)
    big[f"{img}/R10m/{_TILE}_AOT_10m.jp2"] = jitter(4 * MiB)
    big[f"{img}/R10m/{_TILE}_WVP_10m.jp2"] = jitter(8 * MiB)
    for band in ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"):
        big[f"{img}/R20m/{_TILE}_{band}_20m.jp2"] = jitter(19 * MiB)
    for kind, size in (("TCI", 12 * MiB), ("SCL", 3 * MiB), ("AOT", 1 * MiB), ("WVP", 2 * MiB)):
        big[f"{img}/R20m/{_TILE}_{kind}_20m.jp2"] = jitter(size)
    for band in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"):
        big[f"{img}/R60m/{_TILE}_{band}_60m.jp2"] = jitter(2 * MiB)
    for kind in ("TCI", "SCL", "AOT", "WVP"):
        big[f"{img}/R60m/{_TILE}_{kind}_60m.jp2"] = jitter(1 * MiB + 300 * KiB)

    small: list[tuple[str, int]] = [
        (f"{_SAFE}/manifest.safe", 62 * KiB),
        (f"{_SAFE}/MTD_MSIL2A.xml", 55 * KiB),
        (f"{_SAFE}/INSPIRE.xml", 18 * KiB),
        (f"{_SAFE}/HTML/UserProduct_index.html", 9 * KiB),
        (f"{_SAFE}/HTML/UserProduct_index.xsl", 11 * KiB),
        (f"{_SAFE}/HTML/banner_1.png", 40 * KiB),
        (f"{_SAFE}/HTML/star_bg.jpg", 25 * KiB),
        (f"{_GRANULE}/MTD_TL.xml", 610 * KiB),
        (f"{_GRANULE}/AUX_DATA/AUX_CAMSFO", 420 * KiB),
        (f"{_GRANULE}/AUX_DATA/AUX_ECMWFT", 1500 * KiB),
        (f"{_DS}/MTD_DS.xml", 2900 * KiB),
    ]
    for name in ("Datastrip", "Tile", "User_Product", "Manifest", "Inventory", "Quality"):
        small.append((f"{_SAFE}/rep_info/S2_PDI_Level-2A_{name}_Metadata.xsd", 30 * KiB))
    for check in (
        "FORMAT_CORRECTNESS",
        "GENERAL_QUALITY",
        "GEOMETRIC_QUALITY",
        "RADIOMETRIC_QUALITY",
        "SENSOR_QUALITY",
        "L2A_QUALITY",
    ):
        small.append((f"{_GRANULE}/QI_DATA/{check}.xml", 12 * KiB))
        small.append((f"{_DS}/QI_DATA/{check}.xml", 14 * KiB))
    for band in _BANDS:
        for mask in ("DETFOO", "QUALIT"):
            small.append((f"{_GRANULE}/QI_DATA/MSK_{mask}_{band}.jp2", 160 * KiB))
        for mask in ("CLOUDS", "DEFECT", "NODATA", "SATURA", "TECQUA", "CLASSI", "ANCLOUD"):
            small.append((f"{_GRANULE}/QI_DATA/MSK_{mask}_{band}.gml", 6 * KiB))
        for report in ("GEOM", "RADIO", "SENSOR", "ABSOL", "EQUAL", "CROSS"):
            small.append((f"{_DS}/QI_DATA/{report}_REPORT_{band}.xml", 9 * KiB))
    for res in ("20m", "60m"):
        for prob in ("CLDPRB", "SNWPRB"):
            small.append((f"{_GRANULE}/QI_DATA/MSK_{prob}_{res}.jp2", 350 * KiB))
    small.append((f"{_GRANULE}/QI_DATA/{_TILE}_PVI.jp2", 120 * KiB))
    while len(small) + len(big) < 300:  # per-detector geometry, as older products carried
        i = len(small)
        small.append((f"{_DS}/QI_DATA/DETECTOR_{i % 12 + 1:02d}/GEOMETRY_{i:03d}.xml", 4 * KiB))

    if scale < 1:  # keep the shape: every band raster, a proportional share of the small files
        keep = max(3, round(len(small) * scale))
        small = small[:keep]
    layout = {path: _scaled(jitter(size), scale) for path, size in small}
    layout.update({path: _scaled(size, scale) for path, size in big.items()})
    return layout


def _many_small(scale: float) -> dict[str, int]:
    """2,000 × 32 KiB in nested folders (4 × 5 × 100); ``scale`` shrinks the file count."""
    count = 2000 if scale >= 1 else max(4, round(2000 * scale))
    return {f"d{i % 4}/e{i // 4 % 5}/f{i:05d}.bin": 32 * KiB for i in range(count)}


def _one_big(scale: float) -> dict[str, int]:
    """One 1 GiB file; ``scale`` shrinks its size."""
    return {"one_big.bin": _scaled(1024 * MiB, scale)}


_LAYOUTS = {"safe_like": _safe_like, "many_small": _many_small, "one_big": _one_big}


def dataset_dir(data_dir: Path, name: str, scale: float) -> Path:
    return data_dir / (name if scale == 1 else f"{name}@{scale:g}")


def _write_file(path: Path, size: int, seed: int) -> str:
    rng = random.Random(seed)
    md5 = hashlib.md5()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            block = rng.randbytes(min(CHUNK, left))
            md5.update(block)
            fh.write(block)
            left -= len(block)
    return md5.hexdigest()


def ensure(data_dir: Path, name: str, scale: float = 1.0, log=print) -> Dataset:  # noqa: ANN001
    """The data set, generated if it is missing or was generated from another spec."""
    if name not in _LAYOUTS:
        raise SystemExit(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    spec = {"version": SPEC_VERSION, "name": name, "scale": scale}
    base = dataset_dir(data_dir, name, scale)
    return materialise(base, name, scale, spec, _LAYOUTS[name](scale), log)


def materialise(  # noqa: PLR0913
    base: Path,
    name: str,
    scale: float,
    spec: dict,
    layout: dict[str, int],
    log=print,  # noqa: ANN001
) -> Dataset:
    """``layout`` (relative path -> size) as files under ``base/tree``, generated unless the
    manifest there says they already are (same spec, same sizes, every file present)."""
    manifest = base / "manifest.json"
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        kept = {k: (v[0], v[1]) for k, v in saved.get("files", {}).items()}
        if (
            saved.get("spec") == spec
            and {k: v[0] for k, v in kept.items()} == layout
            and all(_size(base / "tree" / rel) == size for rel, size in layout.items())
        ):
            return Dataset(name, scale, base / "tree", kept)
    if base.exists():
        shutil.rmtree(base)
    total = sum(layout.values())
    log(f"generating {name} (scale {scale:g}): {len(layout)} files, {total / 1e6:.1f} MB in {base}")
    files: dict[str, tuple[int, str]] = {}
    for rel, size in sorted(layout.items()):
        files[rel] = (size, _write_file(base / "tree" / rel, size, _seed(name, rel, SPEC_VERSION)))
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"spec": spec, "files": files}, indent=0, sort_keys=True))
    os.replace(tmp, manifest)
    return Dataset(name, scale, base / "tree", files)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def md5_file(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            md5.update(block)
    return md5.hexdigest()


def compare_tree(dataset: Dataset, dest: Path, *, content: bool = True) -> list[str]:
    """Differences between a downloaded folder and the data set (empty when identical)."""
    problems: list[str] = []
    seen: set[str] = set()
    for path in dest.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(dest).as_posix()
        seen.add(rel)
        if rel not in dataset.files:
            problems.append(f"unexpected file {rel}")
            continue
        size, md5 = dataset.files[rel]
        if path.stat().st_size != size:
            problems.append(f"{rel}: size {path.stat().st_size} != {size}")
        elif content and md5_file(path) != md5:
            problems.append(f"{rel}: content differs")
    problems += [f"missing {rel}" for rel in sorted(set(dataset.files) - seen)]
    return problems
