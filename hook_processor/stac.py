"""How a processor describes its outputs for the STAC catalog: ``context.stac.add_item(...)``.

After ``process`` returns, the runtime writes ``catalog.json`` (STAC 1.1, self-contained) into
output_dir and publishes it with the outputs. By default each *product* gets one item: a product
is one top-level entry of output_dir (a file, or a folder with everything under it), the item's
id is the entry's name, its assets are the entry's files, its ``datetime`` is the run's time and
it has no geometry. ``add_item`` replaces that default for one product (same id), or adds an item
of its own (another id, with ``assets``)::

    def process(input_dir, output_dir, context):
        (output_dir / "scene").mkdir()
        ...  # write scene/ndvi.tif and scene/preview.png
        context.stac.add_item(
            "scene",
            bbox=[5.9, 45.8, 10.5, 47.8],  # the footprint is this box unless geometry= is given
            datetime="2024-06-01T10:30:00Z",
            properties={"platform": "sentinel-2a"},
        )

Arguments are checked at the call, so a mistake fails the run (exit code 4) with a traceback
that points at the author's line. This module imports no pystac: the runtime builds the catalog
with it after ``process`` (``_catalog.py``). The product rule, the item file layout and the
checks are ours: the Hook service says nothing about STAC; OGC 20-089r1 (EO Application
Package) asks for a ``catalog.json`` whose items carry geometry, bbox and datetime.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hook_processor.errors import CatalogError

CATALOG_NAME = "catalog.json"
ITEMS_FOLDER = "_stac"  # where the item files go (ours; reserved like _manifest.json)
# Set by add_item's own arguments, or by the runtime: not in properties=.
_RESERVED_PROPERTIES = frozenset({"datetime", "start_datetime", "end_datetime"})
_GEOMETRY_TYPES = frozenset(
    {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
)


@dataclasses.dataclass(frozen=True)
class ItemDescription:
    """One item as the author described it, checked; the runtime turns it into a pystac Item."""

    id: str
    geometry: dict[str, Any] | None
    bbox: list[float] | None
    datetime: _dt.datetime | None
    start_datetime: _dt.datetime | None
    end_datetime: _dt.datetime | None
    properties: dict[str, Any]
    assets: dict[str, Any] | None  # {key: path relative to output_dir, or a pystac.Asset}


class OutputCatalog:
    """``context.stac``: the items of the catalog the runtime writes after ``process``."""

    def __init__(self, output_dir: Path | None = None) -> None:
        self._output_dir = output_dir
        self._items: dict[str, ItemDescription] = {}

    @property
    def items(self) -> tuple[ItemDescription, ...]:
        """What was added so far, in order."""
        return tuple(self._items.values())

    def add_item(
        self,
        id: str,  # noqa: A002 - STAC's own word
        *,
        geometry: Mapping[str, Any] | Any | None = None,
        bbox: Iterable[float] | None = None,
        datetime: _dt.datetime | str | None = None,
        start_datetime: _dt.datetime | str | None = None,
        end_datetime: _dt.datetime | str | None = None,
        properties: Mapping[str, Any] | None = None,
        assets: Mapping[str, str | os.PathLike[str] | Any] | None = None,
    ) -> None:
        """Describe the item ``id``: a product's name (a top-level file or folder of output_dir)
        replaces its default item; another id is an item of its own and needs ``assets``.

        * ``geometry``: GeoJSON (a dict, or anything with ``__geo_interface__``, e.g. shapely)
          in WGS 84 longitude/latitude. Without ``bbox``, the bbox is computed from it.
        * ``bbox``: ``[west, south, east, north]`` (or 6 numbers with heights). Without
          ``geometry``, the geometry is that box.
        * ``datetime``: a timezone-aware ``datetime`` or an ISO 8601 string with a zone
          (``"2024-06-01T10:30:00Z"``); default the run's time. For a time range give
          ``start_datetime`` and ``end_datetime`` instead.
        * ``properties``: more item properties (``platform``, ``gsd``, ...), JSON values.
        * ``assets``: ``{key: path}`` with paths relative to output_dir (or absolute inside it;
          media type and role from the suffix), or ``{key: pystac.Asset}`` for full control.
          Default for a product: its files.
        """
        where = f"context.stac.add_item({id!r})"
        if not isinstance(id, str) or not id.strip() or id != id.strip():
            raise CatalogError(f"{where}: the id must be a non-empty string without edge spaces")
        if "/" in id or "\\" in id or id in (".", "..") or id.startswith("."):
            raise CatalogError(
                f"{where}: the id names the item's file ({ITEMS_FOLDER}/{id}.json); "
                "use no '/' or '\\' and do not start it with '.'"
            )
        if id in self._items:
            raise CatalogError(f"{where}: item {id!r} was added already; add each item once")
        shape = _geometry(where, geometry)
        box = _bbox(where, bbox)
        if shape is not None and box is None:
            box = _bounds(shape)
        elif box is not None and shape is None:
            shape = _box_polygon(box)
        elif shape is not None and box is not None:
            _check_inside(where, shape, box)
        when = _instant(where, "datetime", datetime)
        start = _instant(where, "start_datetime", start_datetime)
        end = _instant(where, "end_datetime", end_datetime)
        if (start is None) != (end is None):
            raise CatalogError(
                f"{where}: give both start_datetime and end_datetime (a range), or neither"
            )
        if start is not None and end is not None and start > end:
            raise CatalogError(
                f"{where}: start_datetime {start.isoformat()} is after end_datetime "
                f"{end.isoformat()}; swap them"
            )
        self._items[id] = ItemDescription(
            id=id,
            geometry=shape,
            bbox=box,
            datetime=when,
            start_datetime=start,
            end_datetime=end,
            properties=_properties(where, properties),
            assets=self._assets(where, assets),
        )

    def _assets(self, where: str, assets: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if assets is None:
            return None
        if not isinstance(assets, Mapping) or not assets:
            raise CatalogError(
                f"{where}: assets must be a non-empty mapping {{key: path in output_dir}}"
            )
        checked: dict[str, Any] = {}
        for key, value in assets.items():
            if not isinstance(key, str) or not key:
                raise CatalogError(f"{where}: asset keys must be non-empty strings, not {key!r}")
            if isinstance(value, str | os.PathLike):
                checked[key] = self._relative(where, key, Path(value))
            elif _is_pystac_asset(value):
                checked[key] = value
            else:
                raise CatalogError(
                    f"{where}: asset {key!r} is a {type(value).__name__}; give a path in "
                    "output_dir (str or Path) or a pystac.Asset"
                )
        return checked

    def _relative(self, where: str, key: str, path: Path) -> str:
        root = Path(os.path.normpath(self._output_dir or "."))
        full = Path(os.path.normpath(path if path.is_absolute() else root / path))
        outside = CatalogError(
            f"{where}: asset {key!r} ({path}) is outside output_dir; assets are files that "
            "process() writes under output_dir (give their path relative to it)"
        )
        if path.is_absolute() and self._output_dir is None:
            raise outside
        try:
            relative = full.relative_to(root) if full.is_absolute() else full
        except ValueError:
            raise outside from None
        if relative.parts[:1] == ("..",):
            raise outside
        if str(relative) == ".":
            raise CatalogError(f"{where}: asset {key!r} is output_dir itself; name a file in it")
        return relative.as_posix()


def _is_pystac_asset(value: Any) -> bool:
    # Only an author who made a pystac.Asset has imported pystac; nobody else pays for it.
    module = type(value).__module__ or ""
    if not module.startswith("pystac"):
        return False
    import pystac

    return isinstance(value, pystac.Asset)


def _geometry(where: str, geometry: Any) -> dict[str, Any] | None:
    if geometry is None:
        return None
    if hasattr(geometry, "__geo_interface__"):
        geometry = geometry.__geo_interface__
    if not isinstance(geometry, Mapping):
        raise CatalogError(
            f"{where}: geometry must be a GeoJSON geometry (a dict like "
            '{"type": "Polygon", "coordinates": [[[lon, lat], ...]]}), '
            f"not a {type(geometry).__name__}"
        )
    kind = geometry.get("type")
    if kind not in _GEOMETRY_TYPES:
        raise CatalogError(
            f"{where}: geometry type {kind!r} is not a GeoJSON geometry type; one of "
            f"{', '.join(sorted(_GEOMETRY_TYPES))}"
        )
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list | tuple) or not parts:
            raise CatalogError(f"{where}: a GeometryCollection needs a non-empty 'geometries' list")
        return {"type": kind, "geometries": [_geometry(where, g) for g in parts]}
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2}
    coordinates = _coordinates(where, geometry.get("coordinates"), depth.get(str(kind), 3))
    if kind in ("Polygon", "MultiPolygon"):
        rings = [coordinates] if kind == "Polygon" else coordinates
        for polygon in rings:
            for ring in polygon:
                if len(ring) < 4 or ring[0] != ring[-1]:
                    raise CatalogError(
                        f"{where}: a polygon ring needs at least 4 positions and must end where "
                        "it starts (repeat the first [lon, lat] at the end)"
                    )
    return {"type": kind, "coordinates": coordinates}


def _coordinates(where: str, value: Any, depth: int) -> Any:
    if depth == 0:
        return _position(where, value)
    if not isinstance(value, list | tuple) or not value:
        raise CatalogError(
            f"{where}: geometry coordinates must be nested lists of [lon, lat] positions"
        )
    return [_coordinates(where, v, depth - 1) for v in value]


def _position(where: str, value: Any) -> list[float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) not in (2, 3)
        or not all(_is_number(v) for v in value)
    ):
        raise CatalogError(
            f"{where}: a geometry position must be [lon, lat] or [lon, lat, height] numbers, "
            f"not {value!r}"
        )
    lon, lat = value[0], value[1]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise CatalogError(
            f"{where}: position {list(value)!r} is not longitude/latitude in WGS 84 "
            "(lon -180..180, lat -90..90; GeoJSON order is [lon, lat]); reproject it to EPSG:4326"
        )
    return [float(v) for v in value]


def _bbox(where: str, bbox: Any) -> list[float] | None:
    if bbox is None:
        return None
    values = list(bbox) if isinstance(bbox, list | tuple) else None
    if values is None or len(values) not in (4, 6) or not all(_is_number(v) for v in values):
        raise CatalogError(
            f"{where}: bbox must be 4 numbers [west, south, east, north] (or 6 with heights), "
            f"not {bbox!r}"
        )
    box = [float(v) for v in values]
    half = len(box) // 2
    west, south, east, north = box[0], box[1], box[half], box[half + 1]
    if not all(-180 <= x <= 180 for x in (west, east)) or not all(
        -90 <= y <= 90 for y in (south, north)
    ):
        raise CatalogError(
            f"{where}: bbox {box!r} is not longitude/latitude in WGS 84 (west/east -180..180, "
            "south/north -90..90); reproject it to EPSG:4326"
        )
    if south > north:
        raise CatalogError(
            f"{where}: bbox {box!r} has south {south} above north {north}; the order is "
            "[west, south, east, north]"
        )
    if west > east:  # STAC allows it only across the antimeridian
        raise CatalogError(
            f"{where}: bbox {box!r} has west {west} east of east {east}; the order is "
            "[west, south, east, north] (a box across the antimeridian: give the geometry "
            "as a MultiPolygon split at 180 and let the bbox be computed)"
        )
    return box


def _positions(geometry: Mapping[str, Any]) -> list[list[float]]:
    if geometry["type"] == "GeometryCollection":
        return [p for g in geometry["geometries"] for p in _positions(g)]
    found: list[list[float]] = []

    def collect(value: Any) -> None:
        if value and _is_number(value[0]):
            found.append(value)
        else:
            for v in value:
                collect(v)

    collect(geometry["coordinates"])
    return found


def _bounds(geometry: Mapping[str, Any]) -> list[float]:
    points = _positions(geometry)
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return [min(lons), min(lats), max(lons), max(lats)]


def _box_polygon(box: list[float]) -> dict[str, Any]:
    half = len(box) // 2
    w, s, e, n = box[0], box[1], box[half], box[half + 1]
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _check_inside(where: str, geometry: Mapping[str, Any], box: list[float]) -> None:
    half = len(box) // 2
    w, s, e, n = box[0], box[1], box[half], box[half + 1]
    tolerance = 1e-9
    for lon, lat, *_ in _positions(geometry):
        if not (w - tolerance <= lon <= e + tolerance and s - tolerance <= lat <= n + tolerance):
            raise CatalogError(
                f"{where}: the geometry's position [{lon}, {lat}] is outside the bbox {box!r}; "
                "give a bbox that contains the geometry, or leave bbox out to compute it"
            )


def _instant(where: str, name: str, value: Any) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise CatalogError(
                f"{where}: {name} {value!r} is not an ISO 8601 date-time; e.g. "
                '"2024-06-01T10:30:00Z"'
            ) from None
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        raise CatalogError(
            f"{where}: {name} is a date; give a date-time with a time zone, e.g. "
            "datetime(2024, 6, 1, tzinfo=timezone.utc)"
        )
    if not isinstance(value, _dt.datetime):
        raise CatalogError(
            f"{where}: {name} must be a datetime or an ISO 8601 string, not {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise CatalogError(
            f"{where}: {name} {value.isoformat()} has no time zone (STAC needs one); add it, "
            'e.g. "...Z" or datetime(..., tzinfo=timezone.utc)'
        )
    return value.astimezone(_dt.UTC)


def _properties(where: str, properties: Mapping[str, Any] | None) -> dict[str, Any]:
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise CatalogError(f"{where}: properties must be a mapping of names to JSON values")
    reserved = sorted(set(properties) & _RESERVED_PROPERTIES)
    if reserved:
        raise CatalogError(
            f"{where}: give {', '.join(reserved)} as add_item's own argument, not in properties"
        )
    import json

    try:
        json.dumps(dict(properties), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CatalogError(
            f"{where}: properties must hold JSON values (str, number, bool, None, lists, "
            f"dicts): {exc}"
        ) from None
    return dict(properties)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
