"""The STAC catalog of a run's outputs: written after process(), published with the outputs.

Every run here goes through the real runtime against moto's S3 server (the pytest plugin's
``run_processor``); the published bytes (downloaded from S3, or unpacked from the TEMPORARY zip)
are read back with pystac and validated against its bundled STAC 1.1 schemas with the network
blocked (``offline`` fixture).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import pytest

from hook_processor import Context
from hook_processor.testing import ProcessorRun, RunProcessor

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = REPO_ROOT / "examples" / "hello_world"
GEOTIFF_HEADER = b"II*\x00\x08\x00\x00\x00"
COG_HEADER = GEOTIFF_HEADER + b"GDAL_STRUCTURAL_METADATA_SIZE=000140 bytes\nLAYOUT=COG\n"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """No connection but to 127.0.0.1 (moto): schema validation must not reach the network."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"network blocked by the test: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert attempts == [], f"something tried the network: {attempts}"


def published_catalog(run: ProcessorRun) -> pystac.Catalog:
    """The catalog as published (run.output_dir holds the downloaded or unzipped files)."""
    assert run.exit_code == 0, run.logs
    catalog = run.catalog
    assert catalog is not None, sorted(run.outputs)
    catalog.validate_all()  # pystac's bundled core schemas (the offline fixture proves it)
    return catalog


def items(catalog: pystac.Catalog) -> dict[str, pystac.Item]:
    return {item.id: item for item in catalog.get_items(recursive=True)}


def test_hello_world_run_publishes_a_valid_catalog(tmp_path: Path, offline: list[Any]) -> None:
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "hook_processor", "run", str(HELLO_WORLD)]
        + ["--input", str(HELLO_WORLD / "sample" / "input"), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )

    assert completed.returncode == 0, completed.stderr
    manifest = json.loads((out / "_manifest.json").read_text())
    keys = [f["key"].split("/", 1)[1] for f in manifest["files"]]
    assert sorted(keys) == ["_stac/example.data.json", "catalog.json", "example.data"]
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert catalog.catalog_type == pystac.CatalogType.SELF_CONTAINED
    catalog.validate_all()
    (item,) = catalog.get_items(recursive=True)
    assert item.id == "example.data"
    assert item.geometry is None and item.bbox is None
    result = json.loads((out / ".hook-processor-run.json").read_text())
    started = datetime.fromisoformat(result["StartedDate"].replace("Z", "+00:00"))
    assert item.datetime is not None and abs((item.datetime - started).total_seconds()) < 1
    asset = item.assets["example.data"]
    assert asset.href == "../example.data"  # relative, as stored
    assert asset.roles == ["data"]
    assert Path(asset.get_absolute_href() or "").read_bytes() == (out / "example.data").read_bytes()
    for path in (out / "catalog.json", out / "_stac" / "example.data.json"):
        assert str(out) not in path.read_text()  # self-contained: no absolute path inside


def scene_processor(input_dir: Path, output_dir: Path, context: Context) -> None:
    scene = output_dir / "S2_scene"
    scene.mkdir()
    (scene / "ndvi.tif").write_bytes(COG_HEADER + b"pixels")
    (scene / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (scene / "meta.json").write_text("{}")
    (output_dir / "plain.tif").write_bytes(GEOTIFF_HEADER + b"pixels")
    (output_dir / "cube.zarr").mkdir()
    (output_dir / "cube.zarr" / ".zgroup").write_text("{}")
    (output_dir / "cube.zarr" / "0.0").write_bytes(b"chunk")
    (output_dir / "model.nc").write_bytes(b"CDF\x01")
    (output_dir / "notes.txt").write_text("free text")
    context.stac.add_item(
        "S2_scene",
        geometry={
            "type": "Polygon",
            "coordinates": [[[5.9, 45.8], [10.5, 45.8], [10.5, 47.8], [5.9, 47.8], [5.9, 45.8]]],
        },
        datetime="2024-06-01T10:30:00Z",
        properties={"platform": "sentinel-2a", "gsd": 10},
    )
    context.stac.add_item(
        "plain.tif",
        bbox=[-10, 35, 30, 60],
        start_datetime=datetime(2024, 1, 1, tzinfo=UTC),
        end_datetime="2024-12-31T23:59:59+00:00",
    )
    context.stac.add_item(
        "model-run",
        geometry={"type": "Point", "coordinates": [12.5, 41.9]},
        assets={"netcdf": "model.nc", "readme": output_dir / "notes.txt"},
    )


def test_private_items_with_author_geometry(run_processor: RunProcessor, offline: list) -> None:
    run = run_processor(scene_processor, inputs={"x": b"1"})

    catalog = published_catalog(run)
    found = items(catalog)
    assert sorted(found) == ["S2_scene", "cube.zarr", "model-run", "plain.tif"]
    scene = found["S2_scene"]
    assert scene.bbox == [5.9, 45.8, 10.5, 47.8]  # computed from the geometry
    assert scene.geometry is not None and scene.geometry["type"] == "Polygon"
    assert scene.datetime == datetime(2024, 6, 1, 10, 30, tzinfo=UTC)
    assert scene.properties["platform"] == "sentinel-2a" and scene.properties["gsd"] == 10
    assert {k: (a.media_type, a.roles) for k, a in scene.assets.items()} == {
        "ndvi.tif": (pystac.MediaType.COG, ["data"]),
        "preview.png": (pystac.MediaType.PNG, ["overview"]),
        "meta.json": (pystac.MediaType.JSON, ["metadata"]),
    }
    assert scene.assets["ndvi.tif"].href == "../S2_scene/ndvi.tif"
    plain = found["plain.tif"]
    assert plain.bbox == [-10, 35, 30, 60]
    assert plain.geometry == {
        "type": "Polygon",
        "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]],
    }
    assert plain.datetime is None
    assert plain.properties["start_datetime"].startswith("2024-01-01T00:00:00")
    assert plain.assets["plain.tif"].media_type == pystac.MediaType.GEOTIFF  # no COG layout
    model = found["model-run"]
    assert model.bbox == [12.5, 41.9, 12.5, 41.9]
    assert {k: (a.href, a.media_type) for k, a in model.assets.items()} == {
        "netcdf": ("../model.nc", pystac.MediaType.NETCDF),
        "readme": ("../notes.txt", pystac.MediaType.TEXT),
    }
    cube = found["cube.zarr"]  # a Zarr store is one asset, not its chunks
    assert {k: (a.href, a.media_type) for k, a in cube.assets.items()} == {
        "cube.zarr": ("../cube.zarr", pystac.MediaType.VND_ZARR)
    }
    # No default items for model.nc and notes.txt: they are assets of "model-run" already.
    assert run.manifest is not None
    published = {f["key"].split("/", 1)[1] for f in run.manifest["files"]}
    assert {"catalog.json", "_stac/S2_scene.json", "_stac/model-run.json"} <= published


def test_temporary_zip_holds_the_same_catalog(
    run_processor: RunProcessor, offline: list, tmp_path: Path
) -> None:
    private = run_processor(scene_processor, inputs={"x": b"1"})
    temporary = run_processor(scene_processor, inputs={"x": b"1"}, output_storage="TEMPORARY")

    assert temporary.exit_code == 0, temporary.logs
    assert temporary.result["DownloadLink"]
    catalog = published_catalog(temporary)  # run.output_dir: the zip's entries, unpacked
    assert sorted(items(catalog)) == ["S2_scene", "cube.zarr", "model-run", "plain.tif"]
    stac_files = sorted(temporary.catalog_files)
    assert stac_files == sorted(private.catalog_files)
    assert stac_files == [
        "_stac/S2_scene.json",
        "_stac/cube.zarr.json",
        "_stac/model-run.json",
        "_stac/plain.tif.json",
        "catalog.json",
    ]
    assert "catalog.json" not in temporary.outputs  # outputs: what process() wrote
    # The same catalog but for the run's time (the datetime of items without the author's).
    for name in stac_files:
        zipped = json.loads(temporary.catalog_files[name])
        sent = json.loads(private.catalog_files[name])
        for data in (zipped, sent):
            if data.get("id") in ("cube.zarr", "model-run"):  # the run's time
                data["properties"].pop("datetime")
        assert zipped == sent, name


def test_a_processor_without_context_gets_one_default_item_per_product(
    run_processor: RunProcessor, offline: list
) -> None:
    def process(input_dir: Path, output_dir: Path) -> None:
        (output_dir / "a.txt").write_text("a")
        (output_dir / "tiles" / "deep").mkdir(parents=True)
        (output_dir / "tiles" / "deep" / "t1.jp2").write_bytes(b"jp2")

    run = run_processor(process, inputs={"x": b"1"})

    found = items(published_catalog(run))
    assert sorted(found) == ["a.txt", "tiles"]
    tile = found["tiles"].assets["deep/t1.jp2"]
    assert (tile.href, tile.media_type) == ("../tiles/deep/t1.jp2", pystac.MediaType.JPEG2000)


def test_an_empty_output_gets_no_catalog(run_processor: RunProcessor) -> None:
    run = run_processor(lambda input_dir, output_dir: None, inputs={"x": b"1"})

    assert run.exit_code == 0, run.logs
    assert (run.outputs, run.catalog_files) == ({}, {})
    assert "wrote no files" in run.logs


def test_input_catalog_is_exposed_as_pystac(run_processor: RunProcessor, tmp_path: Path) -> None:
    staged = tmp_path / "stage-in"
    staged.mkdir()
    (staged / "scene.tif").write_bytes(b"tif")
    item = pystac.Item(
        "input-scene",
        geometry={"type": "Point", "coordinates": [1.0, 2.0]},
        bbox=[1.0, 2.0, 1.0, 2.0],
        datetime=datetime(2023, 5, 1, tzinfo=UTC),
        properties={},
    )
    item.add_asset("data", pystac.Asset(href=str(staged / "scene.tif")))
    source = pystac.Catalog("stage-in", "EOAP stage-in")
    source.add_item(item)
    source.normalize_and_save(str(staged), catalog_type=pystac.CatalogType.SELF_CONTAINED)

    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        catalog = context.input_catalog
        assert catalog is not None
        for found in catalog.get_items(recursive=True):
            data = Path(found.assets["data"].get_absolute_href() or "")
            (output_dir / f"{found.id}.txt").write_text(f"{found.datetime} {data.read_text()}")
            context.stac.add_item(f"{found.id}.txt", bbox=found.bbox, datetime=found.datetime)

    run = run_processor(process, inputs=staged)

    assert run.exit_code == 0, run.logs
    assert run.outputs["input-scene.txt"] == b"2023-05-01 00:00:00+00:00 tif"
    made = items(published_catalog(run))
    assert made["input-scene.txt"].bbox == [1.0, 2.0, 1.0, 2.0]
    assert made["input-scene.txt"].datetime == datetime(2023, 5, 1, tzinfo=UTC)


def test_input_catalog_is_none_without_one(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        (output_dir / "seen.txt").write_text(repr(context.input_catalog))

    run = run_processor(process, inputs={"a.txt": b"a"})

    assert run.exit_code == 0, run.logs
    assert run.outputs["seen.txt"] == b"None"


def test_an_unreadable_input_catalog_fails_the_run_with_its_name(
    run_processor: RunProcessor,
) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        context.input_catalog  # noqa: B018 - reading it is the point

    run = run_processor(process, inputs={"catalog.json": b"{not json"})

    assert run.exit_code == 4
    assert "the input's catalog.json" in run.status_message
    assert "not a STAC catalog pystac can read" in run.status_message


def write_project(root: Path, *, stac_line: str = "", body: str) -> Path:
    package = root / "offswitch_proc"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "processor.py").write_text(textwrap.dedent(body))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "offswitch-proc"
            version = "0.1.0"

            [tool.hook-processor]
            name = "offswitch_proc"
            entrypoint = "offswitch_proc.processor:process"
            {stac_line}
            """
        )
    )
    return root


OFF_BODY = """
    def process(input_dir, output_dir, context):
        (output_dir / "a.txt").write_text("a")
        context.stac.add_item("a.txt", bbox=[0, 0, 1, 1])
"""


def test_stac_catalog_false_turns_the_catalog_off(
    run_processor: RunProcessor, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "off", stac_line="stac_catalog = false", body=OFF_BODY)

    run = run_processor(project, inputs={"x": b"1"}, mode="subprocess")

    assert run.exit_code == 0, run.logs
    assert run.outputs == {"a.txt": b"a"}
    assert (run.catalog_files, run.catalog) == ({}, None)
    assert run.manifest is not None and len(run.manifest["files"]) == 1
    assert "stac_catalog = false: no catalog.json is written" in run.logs


def test_stac_catalog_must_be_a_boolean(tmp_path: Path) -> None:
    from hook_processor.errors import OptionsError
    from hook_processor.loader import read_project

    project = write_project(tmp_path / "bad", stac_line='stac_catalog = "no"', body=OFF_BODY)

    with pytest.raises(OptionsError, match="stac_catalog: true .* or false"):
        read_project(project)


def own_catalog(output_dir: Path, item_href: str = "./items/a.json") -> None:
    (output_dir / "a.txt").write_text("a")
    item = pystac.Item(
        "a",
        geometry={"type": "Point", "coordinates": [3.0, 4.0]},
        bbox=[3.0, 4.0, 3.0, 4.0],
        datetime=datetime(2020, 1, 1, tzinfo=UTC),
        properties={},
    )
    item.add_asset("data", pystac.Asset(href=str(output_dir / "a.txt")))
    catalog = pystac.Catalog("theirs", "the author's own")
    catalog.add_item(item)
    catalog.normalize_and_save(str(output_dir), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    if item_href != "./items/a.json":
        data = json.loads((output_dir / "catalog.json").read_text())
        for link in data["links"]:
            if link["rel"] == "item":
                link["href"] = item_href
        (output_dir / "catalog.json").write_text(json.dumps(data))


def test_a_processors_own_catalog_is_kept_and_validated(
    run_processor: RunProcessor, offline: list
) -> None:
    written: dict[str, bytes] = {}

    def process(input_dir: Path, output_dir: Path) -> None:
        own_catalog(output_dir)
        written.update({p.name: p.read_bytes() for p in output_dir.rglob("*.json")})

    run = run_processor(process, inputs={"x": b"1"})

    catalog = published_catalog(run)
    assert catalog.id == "theirs"
    assert run.catalog_files["catalog.json"] == written["catalog.json"]  # byte for byte
    assert sorted(run.catalog_files) == ["catalog.json"]  # no item of ours beside theirs
    assert run.outputs["a/a.json"] == written["a.json"]
    assert "process() wrote catalog.json itself (1 items): kept, and valid STAC" in run.logs


def test_an_invalid_own_catalog_fails_clearly(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path) -> None:
        own_catalog(output_dir)
        path = output_dir / "a" / "a.json"
        data = json.loads(path.read_text())
        data["properties"]["datetime"] = "yesterday"
        path.write_text(json.dumps(data))

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4
    assert run.status == "failed"
    assert "output_dir/catalog.json, written by process(), is not valid STAC" in run.status_message
    assert run.published is False


def test_an_own_catalog_linking_outside_output_dir_fails(run_processor: RunProcessor) -> None:
    run = run_processor(
        lambda input_dir, output_dir: own_catalog(output_dir, item_href="../elsewhere/a.json"),
        inputs={"x": b"1"},
    )

    assert run.exit_code == 4
    assert "links to" in run.status_message and "not a file in output_dir" in run.status_message


def test_an_own_catalog_and_add_item_conflict(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        own_catalog(output_dir)
        context.stac.add_item("a.txt", bbox=[0, 0, 1, 1])

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4
    assert "wrote its own catalog.json and also called context.stac.add_item" in (
        run.status_message
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bbox": [10, 50, 5, 55]}, "has west 10.0 east of east 5.0"),
        ({"bbox": [5, 56, 10, 55]}, "has south 56.0 above north 55.0"),
        ({"bbox": [500000, 5000000, 600000, 5100000]}, "reproject it to EPSG:4326"),
        ({"geometry": {"type": "Point", "coordinates": [45.0, 200.0]}}, "reproject it"),
        ({"geometry": {"type": "Circle", "coordinates": [0, 0]}}, "not a GeoJSON geometry type"),
        (
            {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}},
            "must end where it starts",
        ),
        (
            {"geometry": {"type": "Point", "coordinates": [20, 20]}, "bbox": [0, 0, 10, 10]},
            "outside the bbox",
        ),
        ({"datetime": "2024-06-01T10:30:00"}, "has no time zone"),
        ({"datetime": "1 June"}, "is not an ISO 8601 date-time"),
        ({"start_datetime": "2024-01-01T00:00:00Z"}, "give both start_datetime and end_datetime"),
        ({"properties": {"datetime": "x"}}, "give datetime as add_item's own argument"),
        ({"assets": {"data": "../escape.txt"}}, "is outside output_dir"),
    ],
)
def test_bad_author_input_fails_with_the_item_and_the_fix(
    run_processor: RunProcessor, arguments: dict[str, Any], message: str
) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        (output_dir / "scene.tif").write_bytes(b"tif")
        context.stac.add_item("scene.tif", **arguments)

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4, run.logs
    assert "process() raised CatalogError: context.stac.add_item('scene.tif')" in (
        run.status_message
    )
    assert message in run.status_message
    assert run.published is False


def test_an_item_that_names_no_product_needs_assets(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        (output_dir / "scene.tif").write_bytes(b"tif")
        context.stac.add_item("scene", bbox=[0, 0, 1, 1])  # the product is "scene.tif"

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4
    assert "'scene' is not a product of output_dir (its top-level entries: scene.tif)" in (
        run.status_message
    )
    assert "assets={key: path}" in run.status_message


def test_an_asset_that_process_did_not_write(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        (output_dir / "scene.tif").write_bytes(b"tif")
        context.stac.add_item("extra", bbox=[0, 0, 1, 1], assets={"qa": "qa.tif"})

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4
    assert "asset 'qa' is qa.tif, which process() did not write into output_dir" in (
        run.status_message
    )


def test_a_reserved_items_folder_is_refused(run_processor: RunProcessor) -> None:
    def process(input_dir: Path, output_dir: Path) -> None:
        (output_dir / "_stac").mkdir()
        (output_dir / "_stac" / "x.json").write_text("{}")

    run = run_processor(process, inputs={"x": b"1"})

    assert run.exit_code == 4
    assert "output_dir holds _stac, a name hook-processor reserves" in run.status_message


def test_a_pystac_asset_is_taken_as_given(run_processor: RunProcessor, offline: list) -> None:
    def process(input_dir: Path, output_dir: Path, context: Context) -> None:
        (output_dir / "b.dat").write_bytes(b"b")
        asset = pystac.Asset(href="b.dat", media_type="application/x-mine", roles=["data", "qa"])
        context.stac.add_item("b.dat", bbox=[0, 0, 1, 1], assets={"mine": asset})

    run = run_processor(process, inputs={"x": b"1"})

    asset = items(published_catalog(run))["b.dat"].assets["mine"]
    assert (asset.media_type, asset.roles) == ("application/x-mine", ["data", "qa"])


LAZY_BODY = """
    import sys

    def process(input_dir, output_dir, context):
        loaded = sorted(m for m in ("pystac", "jsonschema") if m in sys.modules)
        (output_dir / "loaded.txt").write_text(repr(loaded))
        context.stac.add_item("loaded.txt", bbox=[0, 0, 1, 1])
"""


def test_pystac_is_imported_after_process_only(run_processor: RunProcessor, tmp_path: Path) -> None:
    # A child process of its own (the runtime as the container runs it): nothing of this test
    # module (which imports pystac) is in it.
    project = write_project(tmp_path / "lazy", body=LAZY_BODY)

    run = run_processor(project, inputs={"x": b"1"}, mode="subprocess")

    assert run.exit_code == 0, run.logs
    assert run.outputs["loaded.txt"] == b"[]"  # context.stac.add_item needs no pystac either
    assert items(run.catalog)["loaded.txt"].bbox == [0, 0, 1, 1]


def test_describe_says_whether_the_processor_writes_stac(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hook_processor.cli import main

    on = CliRunner().invoke(main, ["describe", str(HELLO_WORLD)])
    off_project = write_project(tmp_path / "off", stac_line="stac_catalog = false", body=OFF_BODY)
    off = CliRunner().invoke(main, ["describe", str(off_project)])
    as_json = CliRunner().invoke(main, ["describe", str(HELLO_WORLD), "--format", "json"])

    assert on.exit_code == off.exit_code == as_json.exit_code == 0, on.output + off.output
    assert "STAC catalog: yes, catalog.json (STAC 1.1) with the outputs" in on.stdout
    assert "STAC catalog: no ([tool.hook-processor] stac_catalog = false)" in off.stdout
    assert "STAC" not in as_json.stdout  # the JSON stays the entry exactly as the API lists it


def test_a_product_name_of_255_bytes_gets_an_item_file_that_fits(
    run_processor: RunProcessor, offline: list
) -> None:
    long_name = "é" * 124 + ".tif"  # 252 bytes: "<name>.json" would pass 255

    def process(input_dir: Path, output_dir: Path) -> None:
        (output_dir / long_name).write_bytes(b"tif")

    run = run_processor(process, inputs={"x": b"1"})

    item = items(published_catalog(run))[long_name]
    (item_file,) = [n for n in run.catalog_files if n.startswith("_stac/")]
    assert len(item_file.split("/")[1].encode()) <= 255
    assert item.assets[long_name].href == f"../{long_name}"
