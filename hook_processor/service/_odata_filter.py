"""``$filter`` into parameterised SQL: the walker over odata-query's syntax tree (see
:mod:`hook_processor.service.odata` for what is supported and what is ours), and the types the
query modules share (:class:`QueryError`, :class:`Field`, :class:`Entity`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from odata_query import ast
from odata_query import exceptions as odata_exceptions
from odata_query.grammar import ODataLexer, ODataParser

MAX_INT = 2**63 - 1  # SQLite's integers are 64-bit
SUPPORTED_FILTER = (
    "eq, ne, gt, lt, ge, le, and, or, not, parentheses, contains(), startswith(), endswith()"
)
_FUNCTIONS = ("contains", "startswith", "endswith")
_COMPARATORS: dict[type[ast._Comparator], str] = {
    ast.Eq: "=",
    ast.NotEq: "!=",
    ast.Gt: ">",
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.LtE: "<=",
}
# Mirror of a comparison when the literal is on the left (5 lt Priority -> Priority gt 5).
_MIRROR = {"=": "=", "!=": "!=", ">": "<", "<": ">", ">=": "<=", "<=": ">="}
_REFUSED_OPERATORS: dict[type[ast._Node], str] = {
    ast.In: "in",
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.Mod: "mod",
    ast.USub: "- (negation)",
    ast.Any: "any",
    ast.All: "all",
}


class QueryError(ValueError):
    """A query the service does not support or cannot read: HTTP 400 with this message."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One filterable/sortable field: its SQL column (a whitelisted identifier) and type."""

    column: str
    type: str  # "str" | "int" | "bool" | "date" (ISO 8601 text)
    sort: str | None = None  # the SQL expression to sort by, if not the column

    @property
    def sort_key(self) -> str:
        return self.sort or self.column


@dataclasses.dataclass(frozen=True)
class Entity:
    """An entity set as the query sees it: its table and its own fields (OData name -> Field)."""

    name: str
    table: str
    fields: Mapping[str, Field]
    default_order: str  # the SQL ORDER BY used when $orderby is absent (and as a tie-break)
    expandable: tuple[str, ...] = ()

    def field(self, name: str, option: str) -> tuple[str, Field]:
        for known, field in self.fields.items():
            if known.lower() == name.lower():
                return known, field
        raise QueryError(
            f"{option}: {self.name} has no field {name!r}; its fields are: {', '.join(self.fields)}"
        )


def compile_filter(entity: Entity, text: str) -> tuple[str, list[Any]]:
    """``$filter`` text -> (SQL condition, parameters)."""
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
    except odata_exceptions.UnknownFunctionException as exc:
        raise _unsupported_function(exc.function_name) from None
    except odata_exceptions.ArgumentCountException as exc:
        raise QueryError(f"$filter: {exc}") from None
    except odata_exceptions.ODataException as exc:
        where = _where(exc, text)
        raise QueryError(f"$filter: syntax error {where}; supported: {SUPPORTED_FILTER}") from None
    if tree is None:
        raise QueryError(f"$filter: empty expression; supported: {SUPPORTED_FILTER}")
    compiler = _FilterCompiler(entity)
    try:
        return compiler.condition(tree), compiler.params
    except RecursionError:
        raise QueryError("$filter: the expression is nested too deeply") from None


def _where(exc: Exception, text: str) -> str:
    token = getattr(exc, "token", None)
    if token is None or getattr(exc, "eof", False):
        return "at the end of the expression"
    index = int(getattr(token, "index", 0))
    return f"at position {index + 1} (near {text[index : index + 20]!r})"


def _unsupported_function(name: str) -> QueryError:
    return QueryError(
        f"$filter: the function {name}() is not supported; supported: {SUPPORTED_FILTER}"
    )


class _FilterCompiler:
    """Walks the odata-query syntax tree into SQL text (whitelisted columns) and parameters."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.params: list[Any] = []

    def condition(self, node: ast._Node) -> str:
        """A node that must be a boolean expression."""
        if isinstance(node, ast.BoolOp):
            op = "AND" if isinstance(node.op, ast.And) else "OR"
            return f"({self.condition(node.left)} {op} {self.condition(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {self.condition(node.operand)})"
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Identifier | ast.Attribute):
            name, field = self._field(node)
            if field.type == "bool":
                return f"({field.column} = 1)"
            raise QueryError(
                f"$filter: the field {name} is not a boolean; compare it (e.g. {name} eq ...)"
            )
        self._refuse(node)
        raise QueryError(f"$filter: cannot use {_describe(node)} as a condition")

    def _refuse(self, node: ast._Node) -> None:
        op = getattr(node, "op", None) or getattr(node, "comparator", None)
        op = op or getattr(node, "operator", None)
        for kind, word in _REFUSED_OPERATORS.items():
            if isinstance(op, kind):
                raise QueryError(
                    f"$filter: the operator {word!r} is not supported; supported: "
                    f"{SUPPORTED_FILTER}"
                )
        if isinstance(node, ast.CollectionLambda):
            raise QueryError(
                f"$filter: any()/all() are not supported; supported: {SUPPORTED_FILTER}"
            )

    def _field(self, node: ast._Node) -> tuple[str, Field]:
        if isinstance(node, ast.Identifier):
            if node.namespace:
                return self.entity.field(node.full_name(), "$filter")
            return self.entity.field(node.name, "$filter")
        if isinstance(node, ast.Attribute):
            return self.entity.field(f"{_path(node.owner)}/{node.attr}", "$filter")
        raise AssertionError(node)

    def _compare(self, node: ast.Compare) -> str:
        op = _COMPARATORS.get(type(node.comparator))
        if op is None:
            self._refuse(node)
            raise QueryError(f"$filter: unsupported comparison {_describe(node)}")
        left, right = node.left, node.right
        if _is_field(right) and not _is_field(left):
            left, right, op = right, left, _MIRROR[op]
        if _is_field(left):
            name, field = self._field(left)
            if isinstance(right, ast.Null):
                if op not in ("=", "!="):
                    raise QueryError(f"$filter: null can only be compared with eq or ne ({name})")
                return f"({field.column} IS {'NOT ' if op == '!=' else ''}NULL)"
            if _is_field(right):
                _, other = self._field(right)
                return f"({field.column} {op} {other.column})"
            self.params.append(self._value(right, field, name))
            return f"({field.column} {op} ?)"
        if isinstance(left, ast._Literal) and isinstance(right, ast._Literal):
            self.params += [self._plain(left), self._plain(right)]
            return f"(? {op} ?)"
        for side in (left, right):
            self._refuse(side)
            if isinstance(side, ast.UnaryOp) and isinstance(side.op, ast.Not):
                raise QueryError(
                    "$filter: not binds tighter than a comparison (not A eq B is (not A) eq B); "
                    "write not (A eq B)"
                )
            if isinstance(side, ast.Call):
                if side.func.full_name() not in _FUNCTIONS:
                    raise _unsupported_function(side.func.full_name())
                raise QueryError(
                    f"$filter: {side.func.name}() is a condition of its own; "
                    "use it alone, not inside a comparison"
                )
        raise QueryError(f"$filter: cannot compare {_describe(left)} with {_describe(right)}")

    def _call(self, node: ast.Call) -> str:
        name = node.func.full_name()
        if name not in _FUNCTIONS:
            raise _unsupported_function(name)
        target, needle = node.args
        if not _is_field(target) or not isinstance(needle, ast.String):
            raise QueryError(
                f"$filter: write {name}(FIELD,'text'): a field of {self.entity.name} "
                "and a quoted string"
            )
        field_name, field = self._field(target)
        if field.type != "str":
            raise QueryError(f"$filter: {name}() needs a text field; {field_name} is not one")
        col = field.column
        if name == "contains":
            self.params.append(needle.val)
            return f"(instr({col}, ?) > 0)"
        self.params += [needle.val, needle.val]
        if name == "startswith":
            return f"(substr({col}, 1, length(?)) = ?)"
        # substr from length(col) - length(needle) + 1: never longer than col, so a needle
        # longer than the value never matches; an empty needle matches every non-null value.
        return f"(substr({col}, length({col}) - length(?) + 1) = ?)"

    def _value(self, node: ast._Node, field: Field, name: str) -> Any:
        if not isinstance(node, ast._Literal):
            self._refuse(node)
            if isinstance(node, ast.Call):
                raise _unsupported_function(node.func.full_name())
            raise QueryError(f"$filter: cannot compare {name} with {_describe(node)}")
        value = self._plain(node)
        try:
            return _convert(value, field.type)
        except (TypeError, ValueError, OverflowError):
            raise QueryError(
                f"$filter: {name} is {_TYPE_WORDS[field.type]}; {_source(node)} is not"
            ) from None

    def _plain(self, node: ast._Literal) -> Any:
        if isinstance(node, ast.Integer) and abs(node.py_val) > MAX_INT:
            raise QueryError(f"$filter: the number {node.val} is out of range (64-bit integers)")
        if isinstance(node, ast.String | ast.Integer | ast.Float | ast.Boolean):
            return node.py_val
        if isinstance(node, ast.DateTime | ast.Date):
            return _iso(node)
        raise QueryError(
            f"$filter: {type(node).__name__} values are not supported; use strings, numbers, "
            "true/false, null or dates (2024-09-02T16:17:22.942Z)"
        )


_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "bool": "a boolean (true or false)",
    "date": "a date (e.g. 2024-09-02T16:17:22.942Z)",
}


def _convert(value: Any, kind: str) -> Any:
    if kind == "str":
        if isinstance(value, bool):
            raise TypeError(value)
        return value if isinstance(value, str) else str(value)
    if kind == "int":
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float):
            return value
        number = int(value)
        if abs(number) > MAX_INT:
            raise OverflowError(number)  # SQLite's integers are 64-bit
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return int(value.lower() == "true")
        raise TypeError(value)
    if isinstance(value, str):  # a date: an ISO 8601 text
        return _normalise_date(value)
    raise TypeError(value)


def _iso(node: ast.DateTime | ast.Date) -> str:
    return _normalise_date(str(node.val))


def _normalise_date(text: str) -> str:
    """Any ISO 8601 date or date-time -> the stored form, UTC, milliseconds, Z."""
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    utc = parsed.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _is_field(node: ast._Node) -> bool:
    return isinstance(node, ast.Identifier | ast.Attribute)


def _path(node: ast._Node) -> str:
    if isinstance(node, ast.Identifier):
        return node.full_name()
    if isinstance(node, ast.Attribute):
        return f"{_path(node.owner)}/{node.attr}"
    return _describe(node)


def _source(node: ast._Node) -> str:
    if isinstance(node, ast.String):
        return repr(node.val)
    return str(getattr(node, "val", _describe(node)))


def _describe(node: ast._Node) -> str:
    if isinstance(node, ast.Identifier | ast.Attribute):
        return f"the field {_path(node)}"
    if isinstance(node, ast._Literal):
        return f"the value {_source(node)}"
    if isinstance(node, ast.Call):
        return f"{node.func.full_name()}()"
    return type(node).__name__
