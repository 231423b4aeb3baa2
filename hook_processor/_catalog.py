"""The STAC catalog of a run's outputs, built with pystac after ``process`` returns.

Layout in output_dir (ours; the Hook service says nothing about STAC):

* ``catalog.json``: a self-contained STAC 1.1 catalog (relative links, no self links);
* ``_stac/<item id>.json``: one item per product (see :mod:`hook_processor.stac`; an id too
  long for a file name is cut, :func:`item_file_name`), its assets relative hrefs
  (``../<product>/<file>``) with a media type and a role from the suffix.

A processor that writes its own ``catalog.json`` keeps it: it is read and validated against
the core STAC schemas that pystac bundles (offline; extension schemas are online only, so they
are not checked), and an invalid one fails the run (exit code 4). pystac and jsonschema are
imported here only, after ``process``: ``hook-processor exec`` starts without them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from hook_processor.errors import CatalogError, PublishError
from hook_processor.stac import CATALOG_NAME, ITEMS_FOLDER, ItemDescription, OutputCatalog

_NAME_MAX = 255  # bytes of one file name (ext4, xfs, APFS)
_COG_MARK = b"LAYOUT=COG"  # GDAL's COG driver writes it into the header's ghost area

# suffix: (pystac.MediaType name or a media type, role)
_SUFFIXES: dict[str, tuple[str | None, str]] = {
    ".tif": ("GEOTIFF", "data"),
    ".tiff": ("GEOTIFF", "data"),
    ".jp2": ("JPEG2000", "data"),
    ".nc": ("NETCDF", "data"),
    ".nc4": ("NETCDF", "data"),
    ".h5": ("HDF5", "data"),
    ".hdf5": ("HDF5", "data"),
    ".hdf": ("HDF", "data"),
    ".zarr": ("VND_ZARR", "data"),
    ".parquet": ("VND_APACHE_PARQUET", "data"),
    ".gpkg": ("GEOPACKAGE", "data"),
    ".fgb": ("FLATGEOBUF", "data"),
    ".geojson": ("GEOJSON", "data"),
    ".kml": ("KML", "data"),
    ".csv": ("text/csv", "data"),
    ".zip": ("application/zip", "data"),
    ".txt": ("TEXT", "data"),
    ".json": ("JSON", "metadata"),
    ".xml": ("XML", "metadata"),
    ".yaml": ("application/yaml", "metadata"),
    ".yml": ("application/yaml", "metadata"),
    ".html": ("HTML", "metadata"),
    ".md": ("text/markdown", "metadata"),
    ".pdf": ("PDF", "metadata"),
    ".log": ("TEXT", "metadata"),
    ".png": ("PNG", "overview"),
    ".jpg": ("JPEG", "overview"),
    ".jpeg": ("JPEG", "overview"),
    ".webp": ("image/webp", "overview"),
}


@dataclasses.dataclass(frozen=True)
class Written:
    """What :func:`write` did, for the run's log."""

    items: int
    own: bool  # the processor wrote catalog.json itself (kept, validated)


def write(
    output_dir: Path,
    described: OutputCatalog,
    *,
    run_time: _dt.datetime,
    catalog_id: str,
    title: str | None,
) -> Written | None:
    """Write the catalog of ``output_dir`` (None: nothing to describe, the folder is empty)."""
    import pystac

    own = output_dir / CATALOG_NAME
    if own.exists():
        if described.items:
            raise CatalogError(
                f"process() wrote its own {CATALOG_NAME} and also called context.stac.add_item "
                f"({', '.join(repr(i.id) for i in described.items)}); do one of the two: drop "
                f"output_dir/{CATALOG_NAME} to let hook-processor write it from add_item, or "
                "describe every item in your own catalog"
            )
        return Written(items=_validate_own(own, output_dir), own=True)
    if (output_dir / ITEMS_FOLDER).exists():
        raise CatalogError(
            f"output_dir holds {ITEMS_FOLDER}, a name hook-processor reserves for the item files "
            f"of the {CATALOG_NAME} it writes; rename it, or set stac_catalog = false in "
            "[tool.hook-processor]"
        )
    products = _products(output_dir)
    if not products and not described.items:
        return None
    catalog = pystac.Catalog(
        id=catalog_id,
        description=f"The outputs of {title or catalog_id}, written by hook-processor",
        title=title,
    )
    catalog.set_self_href(str(output_dir / CATALOG_NAME))
    items = _items(output_dir, products, described, run_time)
    for item in items:
        catalog.add_item(item)
        item.set_self_href(str(output_dir / ITEMS_FOLDER / item_file_name(item.id)))
    catalog.make_all_asset_hrefs_relative()
    try:
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    except OSError as exc:
        raise PublishError(f"could not write {output_dir / CATALOG_NAME}: {exc}") from exc
    return Written(items=len(items), own=False)


def item_file_name(item_id: str) -> str:
    """``<id>.json``. An id with control characters (which URL parsing drops from hrefs) or too
    long for a file name (255 bytes) is made safe, with a digest of the whole id so that two
    ids never share a file."""
    name = f"{item_id}.json"
    safe = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in item_id)
    if safe == item_id and len(name.encode("utf-8")) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:16]
    cut = safe.encode("utf-8")[: _NAME_MAX - len(digest) - 6].decode("utf-8", "ignore")
    return f"{cut}-{digest}.json"


def read_input(input_dir: Path) -> Any:
    """The staged input's ``catalog.json`` as a pystac catalog (EOAP stage-in), or None."""
    path = input_dir / CATALOG_NAME
    if not path.is_file():
        return None
    import pystac

    try:
        catalog = pystac.read_file(str(path))
    except (ValueError, KeyError, OSError, pystac.STACError) as exc:
        raise CatalogError(
            f"the input's {CATALOG_NAME} ({path}) is not a STAC catalog pystac can read: {exc}"
        ) from exc
    if not isinstance(catalog, pystac.Catalog):  # a Collection is a Catalog too
        raise CatalogError(
            f"the input's {CATALOG_NAME} ({path}) is a STAC {type(catalog).__name__}, not a "
            "Catalog or Collection"
        )
    return catalog


def validate_offline(catalog: Any) -> int:
    """Validate every object of ``catalog`` against pystac's bundled core STAC schemas (no
    network: extension schemas are skipped); the number of items. Raises pystac's error."""
    import pystac
    from pystac.validation import validate_dict

    count = 0
    objects: list[Any] = [catalog]
    while objects:
        obj = objects.pop()
        data = obj.to_dict(include_self_link=False, transform_hrefs=False)
        validate_dict(data, stac_version=data.get("stac_version"), extensions=[])
        if isinstance(obj, pystac.Item):
            count += 1
        else:
            objects += list(obj.get_children()) + list(obj.get_items())
    return count


def _validate_own(path: Path, output_dir: Path) -> int:
    """Walk the author's catalog file by file (JSON, not pystac objects, so that a bad value is
    a schema error naming its file, not a parser's traceback); the number of items."""
    import pystac
    from pystac.validation import validate_dict

    root = output_dir.resolve()
    where = f"output_dir/{CATALOG_NAME}, written by process(),"
    pending, seen, count = [path.resolve()], set(), 0
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        shown = current.relative_to(root).as_posix()
        try:
            data = json.loads(current.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CatalogError(f"{where} is not valid STAC: {shown} is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CatalogError(f"{where} is not valid STAC: {shown} is not a JSON object")
        if current == path.resolve() and data.get("type") not in ("Catalog", "Collection"):
            raise CatalogError(f"{where} is a {data.get('type')!r}, not a STAC Catalog")
        try:
            validate_dict(data, stac_version=data.get("stac_version"), extensions=[])
        except pystac.STACValidationError as exc:
            raise CatalogError(f"{where} is not valid STAC: {shown}: {_first_line(exc)}") from exc
        except (pystac.STACError, ValueError, KeyError, TypeError) as exc:
            raise CatalogError(f"{where} cannot be validated: {shown}: {exc}") from exc
        count += data.get("type") == "Feature"
        for link in data.get("links") or []:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = str(link.get("href", ""))
            target = None if "://" in href else (current.parent / href).resolve()
            if target is None or not target.is_relative_to(root) or not target.is_file():
                raise CatalogError(
                    f"{where} links to {href} (from {shown}), which is not a file in "
                    "output_dir: every child and item of the published catalog must be "
                    "published with it; write it into output_dir with a relative href"
                )
            pending.append(target)
    return count


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _products(output_dir: Path) -> dict[str, list[str]]:
    """{product name: its files (relative posix paths in output_dir)}; a ``*.zarr`` folder is
    one file (one asset), not its chunks."""
    from hook_processor._s3 import walk as _walk

    products: dict[str, list[str]] = {}
    for local in _walk.walk(output_dir):
        parts = local.rel.split("/")
        if local.rel == CATALOG_NAME or parts[0] == ITEMS_FOLDER:
            continue
        zarr = next((i for i, p in enumerate(parts[:-1]) if p.lower().endswith(".zarr")), None)
        rel = "/".join(parts[: zarr + 1]) if zarr is not None else local.rel
        files = products.setdefault(parts[0], [])
        if rel not in files:
            files.append(rel)
    return products


def _items(
    output_dir: Path,
    products: dict[str, list[str]],
    described: OutputCatalog,
    run_time: _dt.datetime,
) -> list[Any]:
    claimed = {
        path for d in described.items for path in (d.assets or {}).values() if isinstance(path, str)
    }
    known = {f for files in products.values() for f in files}
    items = []
    for d in described.items:
        if d.assets is None and d.id not in products:
            raise CatalogError(
                f"context.stac.add_item({d.id!r}): {d.id!r} is not a product of output_dir (its "
                f"top-level entries: {', '.join(sorted(products)) or 'none'}); use a product's "
                "name, or give the item's files as assets={key: path}"
            )
        for key, path in (d.assets or {}).items():
            if isinstance(path, str) and path not in known and not (output_dir / path).is_file():
                raise CatalogError(
                    f"context.stac.add_item({d.id!r}): asset {key!r} is {path}, which process() "
                    "did not write into output_dir; write the file, or fix the path (relative "
                    "to output_dir)"
                )
        if d.assets is None:  # the product's files, but those another item names as assets
            assets = _keys(d.id, [f for f in products[d.id] if f not in claimed])
        else:
            assets = d.assets
        items.append(_item(output_dir, d, assets, run_time))
    authored = {d.id for d in described.items}
    for name, files in products.items():
        left = [f for f in files if f not in claimed]
        if name not in authored and left:
            default = ItemDescription(name, None, None, None, None, None, {}, None)
            items.append(_item(output_dir, default, _keys(name, left), run_time))
    return items


def _keys(product: str, files: list[str]) -> dict[str, Any]:
    """Asset keys: the path inside the product folder (a file product: its name)."""
    return {(f[len(product) + 1 :] if f != product else f): f for f in files}


def _item(
    output_dir: Path, d: ItemDescription, assets: dict[str, Any], run_time: _dt.datetime
) -> Any:
    import pystac

    properties: dict[str, Any] = dict(d.properties)
    when = d.datetime
    if d.start_datetime is not None and d.end_datetime is not None:
        properties["start_datetime"] = _stamp(d.start_datetime)
        properties["end_datetime"] = _stamp(d.end_datetime)
    elif when is None:
        when = run_time
    item = pystac.Item(
        id=d.id,
        geometry=d.geometry,
        bbox=d.bbox,
        datetime=when,
        properties=properties,
    )
    for key, value in assets.items():
        if isinstance(value, str):
            item.add_asset(key, _asset(output_dir / value))
        else:
            item.add_asset(key, _authored_asset(output_dir, d.id, key, value))
    return item


def _authored_asset(output_dir: Path, item_id: str, key: str, asset: Any) -> Any:
    """A pystac.Asset of the author: a local href is relative to output_dir, as paths are."""
    asset = asset.clone()
    href = str(asset.href)
    if "://" in href:
        return asset  # a URL: the author's to keep right
    path = Path(href) if Path(href).is_absolute() else output_dir / href
    try:
        inside = Path(path).resolve().is_relative_to(output_dir.resolve())
    except OSError:
        inside = False
    if not inside or not path.exists():
        raise CatalogError(
            f"context.stac.add_item({item_id!r}): asset {key!r} has href {href}, which is not a "
            "file that process() wrote into output_dir; give its path relative to output_dir "
            "(or a URL)"
        )
    asset.href = str(path)
    return asset


def _asset(path: Path) -> Any:
    import pystac

    media_type, role = _SUFFIXES.get(path.suffix.lower(), (None, "data"))
    if media_type == "GEOTIFF" and _is_cog(path):
        media_type = "COG"
    if media_type is not None and hasattr(pystac.MediaType, media_type):
        media_type = str(getattr(pystac.MediaType, media_type))
    return pystac.Asset(href=str(path), media_type=media_type, roles=[role])


def _is_cog(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return _COG_MARK in f.read(1024)
    except OSError:
        return False


def _stamp(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
