"""OData query options (``$filter``, ``$orderby``, ``$top``, ``$skip``, ``$count``, ``$expand``)
into parameterised SQL over the store's tables.

``$filter`` is parsed by the maintained ``odata-query`` grammar (its lexer and parser); we walk
its syntax tree ourselves because we support a deliberate subset and must refuse the rest
loudly: ``eq ne gt lt ge le``, ``and or not``, parentheses, ``contains``, ``startswith``,
``endswith``, on the entity's own fields. Anything else (another function or operator, an
unknown field, a syntax error, an unknown query option) raises :class:`QueryError`, a 400 whose
message names what is refused and what is supported; nothing is silently ignored.

Injection: only identifiers from an entity's whitelist (:class:`Entity.fields`) reach the SQL
text; every value is a ``?`` parameter.

Ours (the live API is silent, hook-contract.md §7):
- field names match case-insensitively (the DEDL tutorial writes ``id eq 123``);
- a literal is converted to its field's type: ``Id eq 123`` on a string ``Id`` compares with
  ``'123'``; ``Priority eq '5'`` with ``5``; a value that does not convert is a 400;
- dates compare as the stored ISO 8601 UTC text (``2024-09-02T16:17:22.942Z``): a DateTime or
  Date literal is normalised to that form first;
- string functions are case-sensitive (as OData's are);
- ``Id`` sorts by its number even where the API shows it as a string;
- an unknown query option (``$select``, ``$search``, ``filter`` without ``$``...) is a 400.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._odata_filter import MAX_INT, SUPPORTED_FILTER, Entity, Field, QueryError, compile_filter

__all__ = [
    "BATCH_ORDERS",
    "OPTIONS",
    "PRODUCTION_ORDERS",
    "PRODUCTS",
    "SUPPORTED_FILTER",
    "WORKFLOWS",
    "Entity",
    "Field",
    "Query",
    "QueryError",
    "compile_filter",
    "parse_query",
]


def _int_id(column: str) -> Field:
    # A string Id made of digits: shown as a string, sorted as a number.
    return Field(column, "str", sort=f"CAST({column} AS INTEGER)")


WORKFLOWS = Entity(
    "Workflows",
    "workflows",
    {
        "Id": _int_id("Id"),
        "Name": Field("Name", "str"),
        "DisplayName": Field("DisplayName", "str"),
        "Description": Field("Description", "str"),
        "Documentation": Field("Documentation", "str"),
        "InputProductType": Field("InputProductType", "str"),
        "OutputProductType": Field("OutputProductType", "str"),
        "WorkflowVersion": Field("WorkflowVersion", "str"),
        "CustomInputSource": Field("CustomInputSource", "bool"),
        "InputProductStatusOffline": Field("InputProductStatusOffline", "bool"),
    },
    default_order="CAST(Id AS INTEGER), Id",
    expandable=("WorkflowOptions",),
)

BATCH_ORDERS = Entity(
    "BatchOrders",
    "batch_orders",
    {
        "Id": Field("Id", "int"),
        "Name": Field("Name", "str"),
        "Priority": Field("Priority", "int"),
        "WorkflowName": Field("WorkflowName", "str"),
        "Status": Field("Status", "str"),
        "SubmissionDate": Field("SubmissionDate", "date"),
        "EstimatedDate": Field("EstimatedDate", "date"),
        "KeycloakUUID": Field("KeycloakUUID", "str"),
        "WorkflowId": Field("WorkflowId", "int"),
        "WorkflowDisplayName": Field("WorkflowDisplayName", "str"),
        "WorkflowVersion": Field("WorkflowVersion", "str"),
    },
    default_order="Id",
)

PRODUCTS = Entity(
    "Products",
    "items",
    {
        "Id": Field("Id", "int"),
        "BatchOrderId": Field("BatchOrderId", "int"),
        "InputProductReference": Field("InputProductReference", "str"),
        "SubmissionDate": Field("SubmissionDate", "date"),
        "Status": Field("Status", "str"),
        "ProcessedName": Field("ProcessedName", "str"),
        "ProcessedSize": Field("ProcessedSize", "int"),
        "OutputUUID": Field("OutputUUID", "str"),
        "StatusMessage": Field("StatusMessage", "str"),
        "CompletedDate": Field("CompletedDate", "date"),
    },
    default_order="Id",
)

PRODUCTION_ORDERS = Entity(
    "ProductionOrders",
    "production_orders",
    {
        "Id": _int_id("Id"),
        "Status": Field("Status", "str"),
        "StatusMessage": Field("StatusMessage", "str"),
        "SubmissionDate": Field("SubmissionDate", "date"),
        "Name": Field("Name", "str"),
        "EstimatedDate": Field("EstimatedDate", "date"),
        # The API shows it as {"Reference", "ContentDate"}: the OData path names the part.
        "InputProductReference/Reference": Field("InputProductReference", "str"),
        "WorkflowName": Field("WorkflowName", "str"),
        "WorkflowId": Field("WorkflowId", "int"),
        "Priority": Field("Priority", "int"),
    },
    default_order="CAST(Id AS INTEGER)",
)

OPTIONS = ("$filter", "$orderby", "$top", "$skip", "$count", "$expand")


@dataclasses.dataclass
class Query:
    """A read query: WHERE (with its parameters), ORDER BY, LIMIT/OFFSET, $count, $expand."""

    where: str = "1"
    params: list[Any] = dataclasses.field(default_factory=list)
    order_by: str = ""
    top: int | None = None
    skip: int = 0
    count: bool = False
    expand: tuple[str, ...] = ()

    def select(self, columns: str, table: str) -> tuple[str, list[Any]]:
        sql = f"SELECT {columns} FROM {table} WHERE {self.where} ORDER BY {self.order_by}"
        params = list(self.params)
        if self.top is not None or self.skip:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if self.top is None else self.top, self.skip]
        return sql, params

    def count_sql(self, table: str) -> tuple[str, list[Any]]:
        return f"SELECT COUNT(*) FROM {table} WHERE {self.where}", list(self.params)


def parse_query(
    entity: Entity,
    params: Mapping[str, str],
    *,
    allowed: tuple[str, ...] = OPTIONS,
    base: tuple[str, list[Any]] | None = None,
) -> Query:
    """The query of one request. ``base`` is an extra condition (``BatchOrderId = ?``) ANDed in.

    Raises :class:`QueryError` for any unknown or unsupported option, value or expression."""
    for key in params:
        if key not in allowed:
            raise QueryError(
                f"the query option {key!r} is not supported on {entity.name}; "
                f"supported: {', '.join(allowed)}"
            )
    query = Query(order_by=entity.default_order)
    conditions: list[str] = []
    if base is not None:
        conditions.append(base[0])
        query.params += base[1]
    if params.get("$filter", "").strip():
        where, values = compile_filter(entity, params["$filter"])
        conditions.append(where)
        query.params += values
    if conditions:
        query.where = " AND ".join(f"({c})" for c in conditions)
    if "$orderby" in params:
        query.order_by = _order_by(entity, params["$orderby"])
    if "$top" in params:
        query.top = _non_negative("$top", params["$top"])
    if "$skip" in params:
        query.skip = _non_negative("$skip", params["$skip"])
    if "$count" in params:
        value = params["$count"].strip().lower()
        if value not in ("true", "false"):
            raise QueryError(f"$count must be true or false, not {params['$count']!r}")
        query.count = value == "true"
    if "$expand" in params:
        query.expand = _expand(entity, params["$expand"])
    return query


def _non_negative(option: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_INT:
        raise QueryError(f"{option} must be a non-negative integer, not {text!r}")
    return value


def _order_by(entity: Entity, text: str) -> str:
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise QueryError(
                f"$orderby: cannot read {part.strip()!r}; write FIELD [asc|desc], comma-separated"
            )
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise QueryError(f"$orderby: {words[1]!r} is not a direction; use asc or desc")
        _, field = entity.field(words[0], "$orderby")
        keys.append(f"{field.sort_key} {direction.upper()}")
    # A stable tie-break so that $top/$skip pages do not overlap.
    return ", ".join([*keys, entity.default_order])


def _expand(entity: Entity, text: str) -> tuple[str, ...]:
    names = []
    for part in text.split(","):
        name = part.strip()
        match = [known for known in entity.expandable if known.lower() == name.lower()]
        if not match:
            supported = ", ".join(entity.expandable) or "nothing"
            raise QueryError(
                f"$expand: {name!r} cannot be expanded on {entity.name}; supported: {supported}"
            )
        names.append(match[0])
    return tuple(names)
