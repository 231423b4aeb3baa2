"""The JSON shapes of the API, field for field and in the order recorded from the live service
(hook-contract.md §3): store rows -> dicts.

Recorded (the live API): the fields, their order and types, and the ``@odata.context`` strings of
the Workflows list (§3.1), the BatchOrder creation answer (§3.4), the ProductionOrders list
(§3.5) and the Products list (§3.6): Workflow ``Id`` a string, BatchOrder and Product ``Id``
integers, ProductionOrder ``Id`` a string; ``InputProductReference`` a string in Products and an
object ``{Reference, ContentDate}`` in ProductionOrders; notification fields null.

Ours (not recorded): a single entity (``BatchOrder(id)``, ``ProductionOrders(id)``,
``BatchOrder(id)/Product(id)``) is wrapped as ``{"@odata.context", "value": {...}}`` like the
recorded creation answer; ``BatchOrders`` uses the BatchOrder's context string; ``@odata.count``
(``$count=true``) follows ``@odata.context`` as in OData v4.

Secrets: an order's options are shown from ``echoed_json`` (the store's copy without secret
options); as a second guard, any option named like a standard secret option is dropped here too.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pydantic import SecretStr

from ..options import StandardOptions, option_aliases

WORKFLOWS_CONTEXT = "$metadata#Workflows/$entity"
BATCH_ORDER_CONTEXT = "#metadata/Odata.CSC.BatchOrder"
PRODUCTION_ORDER_CONTEXT = "$metadata#ProductionOrder/$entity"
PRODUCTS_CONTEXT = "#metadata/OData.CSC.BatchorderItem"

_WORKFLOW_FIELDS = (
    "Id",
    "Uuid",
    "Name",
    "DisplayName",
    "Documentation",
    "Description",
    "InputProductType",
    "InputProductTypes",
    "OutputProductType",
    "OutputProductTypes",
    "WorkflowVersion",
    "CustomInputSource",
    "InputProductStatusOffline",
)

SECRET_NAMES = frozenset(
    alias.lower()
    for name, field in StandardOptions.model_fields.items()
    if field.annotation in (SecretStr, SecretStr | None)
    for alias in option_aliases(StandardOptions, name)
)


def collection(context: str, values: list[dict[str, Any]], count: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": context}
    if count is not None:
        body["@odata.count"] = count
    body["value"] = values
    return body


def single(context: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.context": context, "value": value}


def workflow(row: sqlite3.Row, *, expand_options: bool) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(row["entry_json"])
    shown = {name: entry.get(name) for name in _WORKFLOW_FIELDS}
    shown["Id"] = str(row["Id"])
    shown["Name"] = row["Name"]
    shown["CustomInputSource"] = bool(row["CustomInputSource"])
    shown["InputProductStatusOffline"] = bool(row["InputProductStatusOffline"])
    for plural in ("InputProductTypes", "OutputProductTypes"):
        if shown[plural] is None:
            shown[plural] = []
    if expand_options:
        shown["WorkflowOptions"] = entry.get("WorkflowOptions", [])
    return shown


def echoed_options(text: str) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = json.loads(text or "[]")
    return [o for o in options if str(o.get("Name", "")).lower() not in SECRET_NAMES]


def batch_order(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "Name": row["Name"],
        "Priority": row["Priority"],
        "WorkflowName": row["WorkflowName"],
        "NotificationEndpoint": None,
        "NotificationEpUsername": None,
        "NotificationStatus": None,
        "WorkflowOptions": echoed_options(row["echoed_json"]),
        "Id": row["Id"],
        "Status": row["Status"],
        "SubmissionDate": row["SubmissionDate"],
        "EstimatedDate": row["EstimatedDate"],
        "KeycloakUUID": row["KeycloakUUID"],
        "WorkflowId": row["WorkflowId"],
        "WorkflowDisplayName": row["WorkflowDisplayName"],
        "WorkflowVersion": row["WorkflowVersion"],
    }


def product(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "Id": row["Id"],
        "BatchOrderId": row["BatchOrderId"],
        "InputProductReference": row["InputProductReference"],
        "SubmissionDate": row["SubmissionDate"],
        "Status": row["Status"],
        "ProcessedName": row["ProcessedName"],
        "ProcessedSize": row["ProcessedSize"],
        "OutputUUID": row["OutputUUID"],
        "StatusMessage": row["StatusMessage"],
        "CompletedDate": row["CompletedDate"],
        "DownloadLink": row["DownloadLink"],
        "NotificationStatus": None,
    }


def production_order(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "Id": str(row["Id"]),
        "Status": row["Status"],
        "StatusMessage": row["StatusMessage"],
        "SubmissionDate": row["SubmissionDate"],
        "Name": row["Name"],
        "EstimatedDate": row["EstimatedDate"],
        "InputProductReference": {"Reference": row["InputProductReference"], "ContentDate": None},
        "WorkflowOptions": echoed_options(row["echoed_json"]),
        "WorkflowName": row["WorkflowName"],
        "WorkflowId": row["WorkflowId"],
        "Priority": row["Priority"],
        "NotificationEndpoint": None,
        "NotificationEpUsername": None,
        "NotificationStatus": None,
    }
