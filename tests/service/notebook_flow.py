"""The seed notebook's calls, replayed in its order and shapes with ``requests``.

Provenance
----------
- ``destination-earth/DestinE-DataLake-Lab``, ``HOOK/Tutorial.ipynb`` at commit
  ``63a4512feced193233897ced449f8dfdc5fb7b99`` (HEAD; the notebook last changed in ``922c5bd``,
  2025-08-12). Its code cells 4-36 are transcribed below, one method per cell (``cell_NN``), in
  order: load the ``.env_tutorial``, the token, ``Workflows?$orderby=Id asc``,
  ``Workflows?$expand=WorkflowOptions&$filter=(Name eq '{workflow}')``, the order body (PRIVATE
  or TEMPORARY, the HOOK_ADDITIONAL options), ``POST BatchOrder/OData.CSC.Order`` (a
  ``json.dumps`` body as the positional ``data``), ``ProductionOrders`` with
  ``params={"$filter": f"id eq {order_id}"}``, ``BatchOrder({order_id})/Products``, the boto3
  ``list_objects_v2`` paginator under ``output_prefix + "/"``, and ``$value`` with
  ``allow_redirects=True`` saved as ``output-{workflow}-{order_id}-{product_id}.zip``.
- ``HOOK/README.md`` at the same commit: the ``.env_tutorial`` block "Example Triggering CUSTOM
  HOOOK - dedl_hello_world" (added in ``08023cc``, 2025-02-12): ``HOOK_WORKFLOW=dedl_hello_world``,
  ``HOOK_COLLECTION_ID=`` and ``HOOK_SOURCE_TYPE=`` empty, ``HOOK_DATA_ID=Custom Hook``,
  ``HOOK_ADDITIONAL1..4`` = ``source_s3_path``, ``source_s3_endpoint_url``,
  ``source_s3_access_key``, ``source_s3_secret_key``; ``HOOK_IS_PRIVATE_STORAGE``,
  ``HOOK_OUTPUT_BUCKET``, ``HOOK_OUTPUT_STORAGE_ACCESS_KEY``, ``HOOK_OUTPUT_STORAGE_SECRET_KEY``,
  ``HOOK_ORDER_NAME``.
- ``HOOK/Tutorial.ipynb`` at ``5ca3871`` (2024-05-14): cell 35,
  ``ProductionOrders?$filter=(endswith(Name,'" + order_name + "'))``, and cell 41, ``$value``
  saved as ``output.zip``.
- The calls of the seed notebook that no public version of the tutorial has, as the project's
  record lists them (``../shared/service-and-scale.md``, "The seed notebook's calls, in order"):
  the token as a Keycloak password grant (``client_id=ordering``), two ``odp-test`` orders with
  ``"Priority": 5`` and ``10`` and ``sleep_time``, and ``ProductionOrders?$filter=(contains(Name,
  '060'))``. Their bodies are built the way the tutorial builds its order body (cell 28);
  :meth:`NotebookFlow.seed_odp_test_orders` says so.

What is changed, and nothing else
---------------------------------
- ``hook_service_root_url`` (cell 8) and the token URL: the local service's.
- The token: the public tutorial calls ``destinelab.AuthHandler(DESP_USERNAME,
  DESP_PASSWORD).get_token()`` (a DESP login, then a token exchange); the seed notebook POSTs the
  Keycloak password grant (form ``grant_type=password``, ``client_id=ordering``, ``username``,
  ``password``), which is what :meth:`cell_06` does, at the local token URL.
- The ``.env_tutorial`` values (given as a mapping instead of a file; ``load_dotenv`` would put
  them in ``os.environ``) and ``output_storage_url`` of cell 23, the one S3 endpoint the notebook
  hard-codes rather than reads from its ``.env`` (the local one instead of
  ``https://s3.central.data.destination-earth.eu``).
- ``input()`` / ``getpass()`` answers are arguments; ``print`` goes to :attr:`NotebookFlow.out`;
  ``open(name, "wb").write(r.content)`` closes its file (``with``), warnings being errors here.
- Between submitting and reading the output a person re-runs the status cell (31) until the
  items are finished: :meth:`rerun_status_until_finished` does that with the same request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests


class NotebookFlow:
    """The notebook's global namespace, one method per code cell."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        hook_service_root_url: str,
        token_url: str,
        output_storage_url: str,
        username: str,
        password: str,
        workdir: Path,
    ) -> None:
        self.environ = dict(env)  # what load_dotenv("./.env_tutorial") leaves in os.environ
        self.hook_service_root_url = hook_service_root_url
        self.token_url = token_url
        self.output_storage_url_value = output_storage_url
        self.DESP_USERNAME = username
        self.DESP_PASSWORD = password
        self.workdir = workdir
        self.out: list[str] = []
        self.responses: list[requests.Response] = []

    # --- the notebook's helpers ------------------------------------------------------------

    def print(self, *args: Any) -> None:
        self.out.append(" ".join(str(a) for a in args))

    def getenv(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(name, default)

    def _keep(self, response: requests.Response) -> requests.Response:
        self.responses.append(response)
        return response

    # --- cells of HOOK/Tutorial.ipynb @ 63a4512 --------------------------------------------

    def cell_06(self) -> None:
        """Authentification - Get token (seed: the Keycloak password grant)."""
        response = self._keep(
            requests.post(
                self.token_url,
                data={
                    "grant_type": "password",
                    "client_id": "ordering",
                    "username": self.DESP_USERNAME,
                    "password": self.DESP_PASSWORD,
                },
            )
        )
        access_token = response.json().get("access_token")
        if access_token is not None:
            self.print("DEDL/DESP Access Token Obtained Successfully")
            self.api_headers = {"Authorization": "Bearer " + access_token}
        else:
            self.print("Failed to Obtain DEDL/DESP Access Token")

    def cell_10(self) -> dict[str, Any]:
        """List available workflows, ordered by Id."""
        result: dict[str, Any] = self._keep(
            requests.get(
                f"{self.hook_service_root_url}Workflows?$orderby=Id asc", headers=self.api_headers
            )
        ).json()
        self.print("List of available DEDL provided Hooks")
        for i in range(len(result["value"])):
            self.print(
                f"Name:{str(result['value'][i]['Name']).ljust(20, ' ')}"
                f"DisplayName:{str(result['value'][i]['DisplayName'])}"
            )
        return result

    def cell_14(self) -> dict[str, Any]:
        """Select a workflow and see parameters."""
        self.workflow = self.getenv("HOOK_WORKFLOW", "data-harvest")
        self.print(f"workflow: {self.workflow}")
        result: dict[str, Any] = self._keep(
            requests.get(
                f"{self.hook_service_root_url}Workflows?$expand=WorkflowOptions&$filter=(Name eq "
                f"'{self.workflow}')",
                headers=self.api_headers,
            )
        ).json()
        self.print(json.dumps(result, indent=4))
        return result

    def cell_18(self, answer: str | None = None) -> None:
        """Name your order."""
        self.order_name = self.getenv("HOOK_ORDER_NAME") or answer
        self.print(f"order_name:{self.order_name}")

    def cell_23(self) -> None:
        """Output storage - Islet service."""
        self.output_storage_url = self.output_storage_url_value
        self.output_bucket = self.getenv("HOOK_OUTPUT_BUCKET", "your-bucket-name")
        self.output_storage_access_key = self.getenv(
            "HOOK_OUTPUT_STORAGE_ACCESS_KEY", "your-access-key"
        )
        self.output_storage_secret_key = self.getenv(
            "HOOK_OUTPUT_STORAGE_SECRET_KEY", "your-secret-key"
        )
        self.output_prefix = f"dedl-{self.workflow}-{self.order_name}"
        self.print(f"output_prefix            : {self.output_prefix}")

    def cell_27(self) -> None:
        """Define parameters: collection, data_id, private storage, source_type."""
        self.stac_hda_api_url = "https://hda.data.destination-earth.eu/stac"
        self.collection_id = self.getenv("HOOK_COLLECTION_ID", "EO.ESA.DAT.SENTINEL-2.MSI.L1C")
        data_id = self.getenv(
            "HOOK_DATA_ID", "S2A_MSIL1C_20230910T050701_N0509_R019_T47VLH_20230910T074321.SAFE"
        )
        assert data_id is not None
        self.data_id = data_id
        self.identifier_list = [element.strip() for element in data_id.split(",")]
        self.is_private_storage = self.getenv("HOOK_IS_PRIVATE_STORAGE", "False") == "True"
        self.print(f"is_private_storage: {self.is_private_storage}")
        self.source_type = self.getenv("HOOK_SOURCE_TYPE", "DESP")
        self.print(f"source_type: {self.source_type}")

    def cell_28(self) -> dict[str, Any]:
        """Build the order body (PRIVATE or TEMPORARY) and send the order."""
        body: dict[str, Any] = {
            "Name": "Tutorial " + str(self.workflow) + " - " + str(self.order_name),
            "WorkflowName": self.workflow,
            "IdentifierList": self.identifier_list,
            "WorkflowOptions": [],
        }
        if self.is_private_storage:
            self.print("##### Preparing Order Body for PRIVATE STORAGE #####")
            body["WorkflowOptions"].extend(
                [
                    {"Name": "output_storage", "Value": "PRIVATE"},
                    {"Name": "output_s3_access_key", "Value": self.output_storage_access_key},
                    {"Name": "output_s3_secret_key", "Value": self.output_storage_secret_key},
                    {
                        "Name": "output_s3_path",
                        "Value": f"s3://{self.output_bucket}/{self.output_prefix}",
                    },
                    {"Name": "output_s3_endpoint_url", "Value": self.output_storage_url},
                ]
            )
        else:
            self.print("##### Preparing Order Body for TEMPORARY STORAGE #####")
            body["WorkflowOptions"].extend([{"Name": "output_storage", "Value": "TEMPORARY"}])

        if self.source_type == "DESP":
            body["WorkflowOptions"].extend(
                [
                    {"Name": "source_type", "Value": "DESP"},
                    {"Name": "desp_source_username", "Value": self.DESP_USERNAME},
                    {"Name": "desp_source_password", "Value": self.DESP_PASSWORD},
                    {"Name": "desp_source_collection", "Value": self.collection_id},
                ]
            )
        elif self.source_type == "EXTERNAL":
            raise NotImplementedError("the custom hook's .env has an empty HOOK_SOURCE_TYPE")
        else:
            self.print("source_type not equal to DESP or EXTERNAL")

        additional_options = []
        for env_key, env_value in self.environ.items():
            if env_key.startswith("HOOK_ADDITIONAL"):
                parts = env_value.split(";")
                name = parts[0].split("=")[1]
                value = parts[1].split("=")[1]
                value_type = parts[2].split("=")[1]
                additional_options.append(
                    {"Name": name, "Value": value if value_type == "str" else int(value)}
                )
        if additional_options:
            self.print("Adding additional_options")
            body["WorkflowOptions"].extend(additional_options)

        self.order_body_custom_bucket = body
        order_request: dict[str, Any] = self._keep(
            requests.post(
                self.hook_service_root_url + "BatchOrder/OData.CSC.Order",
                json.dumps(body),
                headers=self.api_headers,
            )
        ).json()
        self.print(json.dumps(order_request, indent=4))
        self.order_id = order_request["value"]["Id"]
        self.print(f"order 'Id' from order_request: {self.order_id}")
        return order_request

    def cell_31(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Check the status of the order: ProductionOrders (one item) and Products."""
        production_orders = None
        if len(self.identifier_list) == 1:
            order_status_url = f"{self.hook_service_root_url}ProductionOrders"
            params = {"$filter": f"id eq {self.order_id}"}
            production_orders = self._keep(
                requests.get(order_status_url, params=params, headers=self.api_headers)
            ).json()
            self.print(json.dumps(production_orders, indent=4))
        products: dict[str, Any] = self._keep(
            requests.get(
                f"{self.hook_service_root_url}BatchOrder({self.order_id})/Products",
                headers=self.api_headers,
            )
        ).json()
        self.print(json.dumps(products, indent=4))
        return production_orders, products

    def cell_34(self, boto3_client: Any = None) -> list[str]:
        """PRIVATE STORAGE: the contents of the private bucket (boto3's paginator)."""
        import boto3

        keys: list[str] = []
        if self.is_private_storage:
            s3 = boto3_client or boto3.client(
                "s3",
                aws_access_key_id=self.output_storage_access_key,
                aws_secret_access_key=self.output_storage_secret_key,
                endpoint_url=self.output_storage_url,
                region_name="us-east-1",  # a notebook's boto3 has one configured
            )
            paginator = s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.output_bucket, Prefix=self.output_prefix + "/")
            for page in pages:
                try:
                    for obj in page["Contents"]:
                        self.print(obj["Key"])
                        keys.append(obj["Key"])
                except KeyError:
                    self.print("No files exist")
                    raise SystemExit(1) from None
        return keys

    def cell_36(self, is_download_products: bool = True) -> list[Path]:
        """TEMPORARY storage: Products, and (when every item is completed) each $value."""
        downloaded: list[Path] = []
        if not self.is_private_storage:
            product_status_response = self._keep(
                requests.get(
                    f"{self.hook_service_root_url}BatchOrder({self.order_id})/Products",
                    headers=self.api_headers,
                )
            ).json()
            self.print(json.dumps(product_status_response, indent=4))
            if is_download_products:
                is_all_products_completed = True
                for i in range(len(product_status_response["value"])):
                    product_status = product_status_response["value"][i]["Status"]
                    if product_status != "completed":
                        is_all_products_completed = False
                if is_all_products_completed:
                    for i in range(len(product_status_response["value"])):
                        product_id = product_status_response["value"][i]["Id"]
                        url_product = (
                            f"{self.hook_service_root_url}BatchOrder({self.order_id})/"
                            f"Product({product_id})/$value"
                        )
                        self.print(f"url_product: {url_product}")
                        r = self._keep(
                            requests.get(
                                url_product, headers=self.api_headers, allow_redirects=True
                            )
                        )
                        name = f"output-{self.workflow}-{self.order_id}-{product_id}.zip"
                        product_file_name = self.workdir / name
                        # open(...).write(r.content) in the notebook; closed here (warnings
                        # are errors in the tests)
                        with open(product_file_name, "wb") as file:
                            file.write(r.content)
                        self.print(f"Download Complete: product_file_name: {name}")
                        downloaded.append(product_file_name)
                else:
                    self.print(
                        f"Status for order:{self.order_id} - At least one of the products does "
                        "not have the status of 'completed'."
                    )
        return downloaded

    # --- a person re-running cell 31 -----------------------------------------------------

    def rerun_status_until_finished(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            _, products = self.cell_31()
            statuses = [p["Status"] for p in products["value"]]
            if statuses and all(s in ("completed", "failed", "cancelled") for s in statuses):
                return products
            if time.monotonic() > deadline:
                raise AssertionError(f"order {self.order_id} still {statuses} after {timeout} s")
            time.sleep(0.3)

    # --- the seed notebook's calls the public tutorial lacks (service-and-scale.md) ---------

    def seed_odp_test_orders(self, sleep_time: int) -> list[int]:
        """Two ``odp-test`` orders, ``"Priority": 5`` then ``10``, with ``sleep_time`` (seconds;
        the seed uses 120). Bodies shaped as cell 28 shapes its order body (its Name pattern,
        IdentifierList, WorkflowOptions list of Name/Value, a JSON number for the int option)."""
        ids = []
        for priority in (5, 10):
            body = {
                "Name": "Tutorial odp-test - " + str(self.order_name),
                "WorkflowName": "odp-test",
                "IdentifierList": self.identifier_list,
                "Priority": priority,
                "WorkflowOptions": [{"Name": "sleep_time", "Value": sleep_time}],
            }
            order_request = self._keep(
                requests.post(
                    self.hook_service_root_url + "BatchOrder/OData.CSC.Order",
                    json.dumps(body),
                    headers=self.api_headers,
                )
            ).json()
            self.print(json.dumps(order_request, indent=4))
            ids.append(order_request["value"]["Id"])
        return ids

    def seed_production_orders_contains(self, text: str = "060") -> dict[str, Any]:
        result: dict[str, Any] = self._keep(
            requests.get(
                self.hook_service_root_url
                + "ProductionOrders?$filter=(contains(Name,'"
                + text
                + "'))",
                headers=self.api_headers,
            )
        ).json()
        return result

    def cell_35_of_5ca3871(self) -> dict[str, Any]:
        """``ProductionOrders?$filter=(endswith(Name,'<order_name>'))`` (Tutorial @ 5ca3871)."""
        result: dict[str, Any] = self._keep(
            requests.get(
                self.hook_service_root_url
                + "ProductionOrders?$filter=(endswith(Name,'"
                + str(self.order_name)
                + "'))",
                headers=self.api_headers,
            )
        ).json()
        return result

    def cell_41_of_5ca3871(self, order_id: Any, product_id: Any) -> Path:
        """``$value`` saved as ``output.zip`` (Tutorial @ 5ca3871, cell 41)."""
        url = (
            self.hook_service_root_url
            + "BatchOrder("
            + str(order_id)
            + ")/Product("
            + str(product_id)
            + ")/$value"
        )
        r = self._keep(requests.get(url, headers=self.api_headers, allow_redirects=True))
        target = self.workdir / "output.zip"
        with open(target, "wb") as file:  # open('output.zip', 'wb').write(r.content)
            file.write(r.content)
        return target


def custom_hook_env(
    *,
    order_name: str,
    input_path: str,
    s3_endpoint: str,
    access_key: str,
    secret_key: str,
    private: bool,
    output_bucket: str,
) -> dict[str, str]:
    """The README's ``.env_tutorial`` with its custom-hook block uncommented, values changed."""
    return {
        "HOOK_ORDER_NAME": order_name,
        "HOOK_WORKFLOW": "dedl_hello_world",
        "HOOK_COLLECTION_ID": "",
        "HOOK_DATA_ID": "Custom Hook",
        "HOOK_SOURCE_TYPE": "",
        "HOOK_ADDITIONAL1": f"NAME=source_s3_path;VALUE={input_path};VALUE_TYPE=str",
        "HOOK_ADDITIONAL2": f"NAME=source_s3_endpoint_url;VALUE={s3_endpoint};VALUE_TYPE=str",
        "HOOK_ADDITIONAL3": f"NAME=source_s3_access_key;VALUE={access_key};VALUE_TYPE=str",
        "HOOK_ADDITIONAL4": f"NAME=source_s3_secret_key;VALUE={secret_key};VALUE_TYPE=str",
        "HOOK_IS_PRIVATE_STORAGE": "True" if private else "False",
        "HOOK_OUTPUT_BUCKET": output_bucket,
        "HOOK_OUTPUT_STORAGE_ACCESS_KEY": access_key,
        "HOOK_OUTPUT_STORAGE_SECRET_KEY": secret_key,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every step against a running ``hook-processor serve examples/hello_world``:
    ``python tests/service/notebook_flow.py SERVICE_ROOT TOKEN_URL S3_ENDPOINT`` (the three URLs
    it printed). It puts ``example.data`` on the S3 endpoint first, as a user would."""
    import argparse
    import tempfile

    import boto3

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("service_root")
    parser.add_argument("token_url")
    parser.add_argument("s3_endpoint")
    parser.add_argument("--sleep-time", type=int, default=2, help="odp-test's (the seed: 120)")
    args = parser.parse_args(argv)
    s3 = boto3.client(
        "s3",
        endpoint_url=args.s3_endpoint,
        aws_access_key_id="hook-local-access",
        aws_secret_access_key="hook-local-secret",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="inputs")
    here = Path(__file__).resolve().parents[2] / "examples" / "hello_world" / "sample" / "input"
    s3.upload_file(
        str(here / "example.data"), "inputs", "dedl_hello_world/input_file_location/example.data"
    )
    workdir = Path(tempfile.mkdtemp(prefix="notebook-flow-"))
    for private in (True, False):
        env = custom_hook_env(
            order_name="local-060",
            input_path="s3://inputs/dedl_hello_world/input_file_location",
            s3_endpoint=args.s3_endpoint,
            access_key="hook-local-access",
            secret_key="hook-local-secret",
            private=private,
            output_bucket="results",
        )
        nb = NotebookFlow(
            env=env,
            hook_service_root_url=args.service_root,
            token_url=args.token_url,
            output_storage_url=args.s3_endpoint,
            username="me",
            password="anything",
            workdir=workdir,
        )
        for cell in (nb.cell_06, nb.cell_10, nb.cell_14, nb.cell_18, nb.cell_23, nb.cell_27):
            cell()
        nb.cell_28()
        nb.cell_31()
        nb.rerun_status_until_finished()
        nb.cell_34()
        nb.cell_36(is_download_products=True)
        print("\n".join(nb.out))
    low, high = nb.seed_odp_test_orders(args.sleep_time)
    for order_id in (low, high):
        nb.order_id = order_id
        nb.rerun_status_until_finished(timeout=args.sleep_time * 4 + 60)
    for answer in (nb.seed_production_orders_contains("060"), nb.cell_35_of_5ca3871()):
        print(json.dumps([(p["Id"], p["Name"], p["Status"]) for p in answer["value"]]))
    print(f"downloads in {workdir}: {sorted(p.name for p in workdir.iterdir())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
