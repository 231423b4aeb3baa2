"""The seed notebook's calls (notebook_flow.py) against ``hook-processor serve
examples/hello_world`` started as a user starts it. ``sleep_time`` is 1 s here, not the
notebook's 120."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from notebook_flow import NotebookFlow, custom_hook_env  # noqa: E402
from serve_process import HELLO_WORLD, SAMPLE, START_KEYS, put_input, serving  # noqa: E402

OUT_SECRET = "nb-out-secret-Zq81"  # moto accepts any keys: distinct ones show any leak
IN_SECRET = "nb-in-secret-Kx42"
PASSWORD = "nb-password-Wd07"


def _flow(served, tmp_path: Path, *, private: bool) -> NotebookFlow:  # type: ignore[no-untyped-def]
    env = custom_hook_env(
        order_name="local-060",
        input_path="s3://inputs/dedl_hello_world/input_file_location",
        s3_endpoint=served.s3_endpoint,
        access_key="nb-access",
        secret_key=OUT_SECRET if private else IN_SECRET,
        private=private,
        output_bucket="results",  # not created by the user: serve creates it on submission
    )
    return NotebookFlow(
        env=env,
        hook_service_root_url=served.root,
        token_url=served.token_url,
        output_storage_url=served.s3_endpoint,
        username="alice",
        password=PASSWORD,
        workdir=tmp_path,
    )


def test_the_seed_notebook_runs_against_serve(tmp_path: Path) -> None:
    with serving([str(HELLO_WORLD)], tmp_path / "data") as served:
        assert set(served.info) == START_KEYS | {"data_dir"}
        assert served.root.endswith("/odata/v1/")
        assert served.info["data_dir"] == str((tmp_path / "data").resolve())
        put_input(served)
        expected = SAMPLE.read_text().upper()

        # --- PRIVATE: token, Workflows, $expand + $filter, the order, status, boto3 listing
        nb = _flow(served, tmp_path, private=True)
        nb.cell_06()
        assert nb.out[-1] == "DEDL/DESP Access Token Obtained Successfully"
        names = [w["Name"] for w in nb.cell_10()["value"]]
        assert {"dedl_hello_world", "odp-test"} <= set(names)
        (workflow,) = nb.cell_14()["value"]
        assert workflow["Name"] == "dedl_hello_world"
        option_names = {o["Name"] for o in workflow["WorkflowOptions"]}
        assert {"output_storage", "output_s3_path"} <= option_names
        nb.cell_18()
        nb.cell_23()
        nb.cell_27()
        assert nb.identifier_list == ["Custom Hook"] and nb.source_type == ""
        answer = nb.cell_28()
        assert nb.responses[-1].status_code == 201  # "If code = 201, the order has been sent"
        private_id = answer["value"]["Id"]
        assert isinstance(private_id, int)
        assert "source_type not equal to DESP or EXTERNAL" in nb.out
        production_orders, products = nb.cell_31()
        assert nb.responses[-2].status_code == 200, nb.responses[-2].text  # $filter=id eq N
        assert production_orders is not None
        assert all(p["Name"].endswith("local-060") for p in production_orders["value"])
        (item,) = nb.rerun_status_until_finished()["value"]
        assert item["Status"] == "completed", item
        keys = nb.cell_34()
        prefix = "dedl-dedl_hello_world-local-060/"
        assert prefix + "example.data" in keys and all(k.startswith(prefix) for k in keys)
        got = served.s3_client().get_object(Bucket="results", Key=prefix + "example.data")
        assert got["Body"].read().decode() == expected

        # --- TEMPORARY: the same cells, Products, $value saved as a zip
        nb = _flow(served, tmp_path, private=False)
        for cell in (nb.cell_06, nb.cell_14, nb.cell_18, nb.cell_23, nb.cell_27, nb.cell_28):
            cell()
        temporary_id = nb.order_id
        (item,) = nb.rerun_status_until_finished()["value"]
        assert item["Status"] == "completed" and item["DownloadLink"], item
        (zip_path,) = nb.cell_36(is_download_products=True)
        assert zip_path.name == f"output-dedl_hello_world-{temporary_id}-{item['Id']}.zip"
        with zipfile.ZipFile(io.BytesIO(zip_path.read_bytes())) as archive:
            (member,) = [n for n in archive.namelist() if n.endswith("example.data")]
            assert archive.read(member).decode() == expected

        # --- the seed's odp-test orders (Priority 5 and 10), contains / endswith, output.zip
        low, high = nb.seed_odp_test_orders(sleep_time=1)
        for order_id in (low, high):
            assert served.wait_for(order_id, {"completed"})
        echoed = [r.json()["value"] for r in nb.responses[-2:]]
        assert [e["Priority"] for e in echoed] == [5, 10]
        contains = nb.seed_production_orders_contains("060")
        assert nb.responses[-1].status_code == 200
        assert len(contains["value"]) == 4  # two hello_world items and two odp-test items
        assert all("060" in p["Name"] for p in contains["value"])
        endswith = nb.cell_35_of_5ca3871()
        assert {p["Id"] for p in endswith["value"]} == {p["Id"] for p in contains["value"]}
        assert {p["Status"] for p in endswith["value"]} == {"completed"}
        output = nb.cell_41_of_5ca3871(temporary_id, item["Id"])
        assert output.read_bytes() == zip_path.read_bytes()

        # secrets: in no API answer and no line serve wrote
        texts = [r.text for r in nb.responses] + [served.stderr(), *served.stdout_lines]
        for secret in (OUT_SECRET, IN_SECRET, PASSWORD):
            assert not [t for t in texts if secret in t], secret
        assert served.stop() == 0
        assert len(served.stdout_lines) == 1  # --json: the one line, logs on stderr
