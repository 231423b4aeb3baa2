"""The order body the seed notebook POSTs for dedl_hello_world (values anonymised), for tests."""

from __future__ import annotations

from typing import Any


def seed_order(secret: str) -> dict[str, Any]:
    """The seed's order body, pointing at a remote service, with ``secret`` as its secret keys."""
    return {
        "Name": "Tutorial dedl_hello_world - user",
        "WorkflowName": "dedl_hello_world",
        "IdentifierList": ["Custom Hook"],
        "WorkflowOptions": [
            {"Name": "output_storage", "Value": "PRIVATE"},
            {"Name": "output_s3_endpoint_url", "Value": "https://s3.example.test"},
            {"Name": "output_s3_access_key", "Value": "OUT-AK"},
            {"Name": "output_s3_secret_key", "Value": secret},
            {"Name": "output_s3_path", "Value": "s3://results/hello"},
            {"Name": "source_s3_path", "Value": "s3://inputs/dedl_hello_world/input_file_location"},
            {"Name": "source_s3_endpoint_url", "Value": "https://s3.example.test"},
            {"Name": "source_s3_access_key", "Value": "IN-AK"},
            {"Name": "source_s3_secret_key", "Value": secret + "-in"},
        ],
        "Priority": 1,
    }
