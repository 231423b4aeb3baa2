"""The FastAPI application: the token endpoint and the OData routes of the local Hook.

Routes (service root ``/odata/v1/``; every one needs ``Authorization: Bearer <token>`` from the
token endpoint, else 401 with ``WWW-Authenticate: Bearer``):

========================================================  =====================================
``POST /auth/realms/dedl/protocol/openid-connect/token``  password grant (auth.py)
``GET  Workflows``                                        ``$filter $orderby $top $skip $count
                                                          $expand=WorkflowOptions``
``POST BatchOrder/OData.CSC.Order``                       201, the new order (contract §3.4)
``GET  BatchOrders``, ``BatchOrder(id)``                  ``$filter $orderby $top $skip $count``
``GET  BatchOrder(id)/Products``, ``.../Product(id)``     the order's items (§3.6)
``GET  BatchOrder(id)/Product(id)/$value``                307 to the item's DownloadLink
``GET  BatchOrder(id)/Product(id)/Log``                   ours: the item's log, text/plain
``GET  ProductionOrders``, ``ProductionOrders(id)``       ``$filter $orderby $top $skip $count``
``POST BatchOrder(id)/OData.CSC.Cancel``                  cancel every unfinished item
``POST ProductionOrder(id)/OData.CSC.Cancel``             the same: a ProductionOrder is an order
========================================================  =====================================

The order dashboard (ours) is at ``/`` (dashboard.py): a static page that calls these routes.

Ours (the live API is silent, hook-contract.md §7): errors are ``{"detail": ...}`` JSON (the
FastAPI shape a third-party client expects for 422): 400 a bad body or query (an unknown query
option too), 401, 404 an unknown id or path (naming it), 405, 409 cancelling a finished order,
422 bad options (``detail[{loc, msg, type}]``, from the order service), 500 without the
exception's text; the token endpoint answers Keycloak's ``{"error", "error_description"}``.
``ProductionOrders('7')``, ``ProductionOrders(7)`` and ``ProductionOrder(7)`` are the same, as are
``BatchOrders(7)`` and ``BatchOrder(7)``. The cancel answers are 200 with the entity as it stands
after the cancel (a running item turns ``cancelled`` when its run has stopped). ``$value`` of an
item without a DownloadLink (PRIVATE output, or not completed) is a 404 saying why. The item log
endpoint is ours: the runtime's log of every run of the item (appended; the runtime redacts
secrets), 404 until the item has run.

Reads are SQL on ``store.connection()`` (one connection per worker thread: the routes are
plain ``def``, run in FastAPI's thread pool); writes go through the ``OrderService``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from ..s3server import S3Server
from . import odata, shapes
from .auth import DEFAULT_LIFETIME, TOKEN_PATH, TokenError, Tokens
from .dashboard import install_dashboard
from .orders import OrderError
from .store import Store

if TYPE_CHECKING:
    from .orders import OrderService

ROOT = "/odata/v1"
_SETS = (
    "Workflows",
    "BatchOrders",
    "BatchOrder(id)",
    "BatchOrder/OData.CSC.Order",
    "BatchOrder(id)/Products",
    "BatchOrder(id)/Product(id)",
    "BatchOrder(id)/Product(id)/$value",
    "BatchOrder(id)/Product(id)/Log",
    "ProductionOrders",
    "ProductionOrders(id)",
    "BatchOrder(id)/OData.CSC.Cancel",
    "ProductionOrder(id)/OData.CSC.Cancel",
)


def create_app(
    service: OrderService,
    store: Store,
    *,
    s3: S3Server,
    users: Mapping[str, str] | None = None,
    token_lifetime: float = DEFAULT_LIFETIME,
    dashboard_login: bool = True,
) -> FastAPI:
    """The application over a running ``service`` and its ``store``.

    ``users``: the ``--users`` file's pairs (auth.load_users), or None to accept any user.
    ``token_lifetime``: seconds a token stays valid (``expires_in``).
    ``dashboard_login``: the dashboard asks for a login (dashboard.needs_login); when False it
    gets a token without one."""
    app = FastAPI(title="hook-processor serve", docs_url=None, redoc_url=None, openapi_url=None)
    tokens = Tokens(store, users, lifetime=token_lifetime)
    app.state.service, app.state.store, app.state.s3, app.state.tokens = service, store, s3, tokens
    _install_errors(app)
    install_dashboard(app, tokens, login=dashboard_login)

    @app.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "send a form (application/x-www-form-urlencoded): "
                    "grant_type=password, client_id=ordering, username, password",
                },
                status_code=400,
            )
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            body = await run_in_threadpool(tokens.grant, form)
        except TokenError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def user(request: Request) -> str:
        header = request.headers.get("authorization")
        found = tokens.user_of(header)
        if found is None:
            problem = "the Bearer token is invalid or expired" if header else "no Bearer token"
            raise HTTPException(
                401,
                f"{problem}: POST grant_type=password, client_id=ordering, username, password "
                f"to {TOKEN_PATH} and send 'Authorization: Bearer <access_token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    auth = [Depends(user)]
    db = store.connection

    @app.get(ROOT, dependencies=auth)
    @app.get(ROOT + "/", dependencies=auth)
    def root() -> dict[str, Any]:
        # Ours: a short OData service document, so the root answers something useful.
        names = ("Workflows", "BatchOrders", "ProductionOrders")
        return {"@odata.context": "$metadata", "value": [{"name": n, "url": n} for n in names]}

    @app.get(ROOT + "/Workflows", dependencies=auth)
    def workflows(request: Request) -> dict[str, Any]:
        query = _query(odata.WORKFLOWS, request)
        rows = _rows(db(), query, "*", odata.WORKFLOWS.table)
        expand = "WorkflowOptions" in query.expand
        values = [shapes.workflow(r, expand_options=expand) for r in rows]
        return shapes.collection(shapes.WORKFLOWS_CONTEXT, values, _count(db(), query, "workflows"))

    @app.post(ROOT + "/BatchOrder/OData.CSC.Order", status_code=201)
    async def order(request: Request, who: str = Depends(user)) -> dict[str, Any]:
        body = await _json_body(request)
        try:
            order_id = await run_in_threadpool(lambda: service.submit(body, user=who))
        except OrderError as exc:
            # A second guard: no refusal may quote a secret option's value back.
            secrets = _secret_values(service, body)
            raise OrderError(exc.status, _redacted(exc.detail, secrets)) from None
        return await run_in_threadpool(lambda: _batch_order(db(), order_id))

    @app.get(ROOT + "/BatchOrders", dependencies=auth)
    def batch_orders(request: Request) -> dict[str, Any]:
        query = _query(odata.BATCH_ORDERS, request)
        rows = _rows(db(), query, "*", "batch_orders")
        values = [shapes.batch_order(r) for r in rows]
        return shapes.collection(
            shapes.BATCH_ORDER_CONTEXT, values, _count(db(), query, "batch_orders")
        )

    @app.get(ROOT + "/BatchOrder({key})", dependencies=auth)
    @app.get(ROOT + "/BatchOrders({key})", dependencies=auth)
    def batch_order(key: str, request: Request) -> dict[str, Any]:
        _no_options(request)
        return _batch_order(db(), _order_id(key))

    @app.get(ROOT + "/BatchOrder({key})/Products", dependencies=auth)
    def products(key: str, request: Request) -> dict[str, Any]:
        order_id = _order_id(key)
        _batch_order(db(), order_id)  # 404 for an unknown order, not an empty list
        base = ("BatchOrderId = ?", [order_id])
        query = _query(odata.PRODUCTS, request, base=base)
        rows = _rows(db(), query, "*", "items")
        values = [shapes.product(r) for r in rows]
        return shapes.collection(shapes.PRODUCTS_CONTEXT, values, _count(db(), query, "items"))

    @app.get(ROOT + "/BatchOrder({key})/Product({item})", dependencies=auth)
    def product(key: str, item: str, request: Request) -> dict[str, Any]:
        _no_options(request)
        row = _item(db(), _order_id(key), item)
        return shapes.single(shapes.PRODUCTS_CONTEXT, shapes.product(row))

    @app.get(ROOT + "/BatchOrder({key})/Product({item})/$value", dependencies=auth)
    def value(key: str, item: str) -> Response:
        row = _item(db(), _order_id(key), item)
        if row["DownloadLink"]:
            return RedirectResponse(row["DownloadLink"], status_code=307)
        if row["OutputLocation"]:
            why = (
                f"its output went to PRIVATE storage ({row['OutputLocation']}); "
                "read it there, or order with output_storage=TEMPORARY"
            )
        elif row["Status"] == "completed":
            why = "it completed without a TEMPORARY output"
        else:
            why = f"its Status is {row['Status']} (a DownloadLink appears once it is completed)"
        raise HTTPException(
            404,
            f"Product {row['Id']} of BatchOrder {row['BatchOrderId']} has no DownloadLink: {why}",
        )

    @app.get(ROOT + "/BatchOrder({key})/Product({item})/Log", dependencies=auth)
    def log(key: str, item: str) -> Response:
        row = _item(db(), _order_id(key), item)
        path = service.item_log(int(row["Id"]))
        if path is None or not path.is_file():
            raise HTTPException(
                404, f"Product {row['Id']} has no log yet: its Status is {row['Status']}"
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        return PlainTextResponse(text)

    @app.get(ROOT + "/ProductionOrders", dependencies=auth)
    def production_orders(request: Request) -> dict[str, Any]:
        query = _query(odata.PRODUCTION_ORDERS, request)
        rows = _rows(db(), query, "*", "production_orders")
        values = [shapes.production_order(r) for r in rows]
        count = _count(db(), query, "production_orders")
        return shapes.collection(shapes.PRODUCTION_ORDER_CONTEXT, values, count)

    @app.get(ROOT + "/ProductionOrders({key})", dependencies=auth)
    @app.get(ROOT + "/ProductionOrder({key})", dependencies=auth)
    def production_order(key: str, request: Request) -> dict[str, Any]:
        _no_options(request)
        return _production_order(db(), _item_id(key, "ProductionOrder"))

    @app.post(ROOT + "/BatchOrder({key})/OData.CSC.Cancel", dependencies=auth)
    def cancel_order(key: str) -> dict[str, Any]:
        order_id = _order_id(key)
        _batch_order(db(), order_id)
        service.cancel_order(order_id)
        return _batch_order(db(), order_id)

    @app.post(ROOT + "/ProductionOrder({key})/OData.CSC.Cancel", dependencies=auth)
    @app.post(ROOT + "/ProductionOrders({key})/OData.CSC.Cancel", dependencies=auth)
    def cancel_production_order(key: str) -> dict[str, Any]:
        # A ProductionOrder is its order under another name (store.py): cancel the order.
        order_id = _item_id(key, "ProductionOrder")
        _production_order(db(), order_id)
        service.cancel_order(order_id)
        return _production_order(db(), order_id)

    return app


def _install_errors(app: FastAPI) -> None:
    def detail(status: int, body: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": body}, status_code=status, headers=dict(headers or {}))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404 and exc.detail == "Not Found":
            return detail(404, f"no such resource: {request.url.path}; {_served()}")
        if exc.status_code == 405:
            return detail(
                405,
                f"{request.method} is not allowed on {request.url.path}",
                exc.headers,
            )
        return detail(exc.status_code, exc.detail, exc.headers)

    async def order_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OrderError)
        return detail(exc.status, exc.detail)

    async def query_error(request: Request, exc: Exception) -> Response:
        return detail(400, str(exc))

    async def server_error(request: Request, exc: Exception) -> Response:
        # Never the exception text: it might hold an option value (a secret).
        return detail(500, f"internal error of hook-processor serve ({type(exc).__name__})")

    handlers: dict[Any, Callable[..., Any]] = {
        HTTPException: http_error,
        OrderError: order_error,
        odata.QueryError: query_error,
        Exception: server_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def _served() -> str:
    return f"the service root {ROOT}/ serves: {', '.join(_SETS)}"


def _query(
    entity: odata.Entity, request: Request, *, base: tuple[str, list[Any]] | None = None
) -> odata.Query:
    params = request.query_params
    for key in params:
        if len(params.getlist(key)) > 1:
            raise odata.QueryError(f"the query option {key!r} is given more than once")
    allowed = odata.OPTIONS if entity.expandable else odata.OPTIONS[:-1]
    return odata.parse_query(entity, dict(params), allowed=allowed, base=base)


def _no_options(request: Request) -> None:
    if request.query_params:
        names = ", ".join(dict(request.query_params))
        raise odata.QueryError(f"a single entity takes no query options (got {names})")


def _rows(db: Any, query: odata.Query, columns: str, table: str) -> list[Any]:
    sql, params = query.select(columns, table)
    return list(db.execute(sql, params).fetchall())


def _count(db: Any, query: odata.Query, table: str) -> int | None:
    if not query.count:
        return None
    sql, params = query.count_sql(table)
    return int(db.execute(sql, params).fetchone()[0])


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not JSON ({exc}); send the order as JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(
            400,
            "the body must be a JSON object with Name, WorkflowName, IdentifierList "
            f"and WorkflowOptions, not a {type(body).__name__}",
        )
    return body


def _secret_values(service: OrderService, body: Mapping[str, Any]) -> list[str]:
    names = set(shapes.SECRET_NAMES)
    workflow = service.workflows.get(str(body.get("WorkflowName")))
    if workflow is not None:
        names |= workflow.secret_names()
    options = body.get("WorkflowOptions")
    found = []
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict) and str(option.get("Name", "")).strip().lower() in names:
            value = option.get("Value")
            forms = {str(value), value if isinstance(value, str) else json.dumps(value)}
            # Very short values are left alone: replacing "a" everywhere would garble the text.
            found += [form for form in forms if len(form) >= 4]
    return found


def _redacted(detail: Any, secrets: list[str]) -> Any:
    if isinstance(detail, str):
        for secret in sorted(secrets, key=len, reverse=True):
            detail = detail.replace(secret, "***")
        return detail
    if isinstance(detail, list):
        return [_redacted(d, secrets) for d in detail]
    if isinstance(detail, dict):
        return {k: _redacted(v, secrets) for k, v in detail.items()}
    return detail


def _key(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == "'":
        key = key[1:-1]
    return key


def _order_id(key: str) -> int:
    text = _key(key)
    if not text.isdigit():
        raise HTTPException(404, f"no BatchOrder with Id {text!r}: BatchOrder Ids are integers")
    return int(text)


def _item_id(key: str, entity: str) -> int:
    text = _key(key)
    if not text.isdigit():
        raise HTTPException(404, f"no {entity} with Id {text!r}: its Ids are digits")
    return int(text)


def _batch_order(db: Any, order_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM batch_orders WHERE Id = ?", (order_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"no BatchOrder with Id {order_id}")
    return shapes.single(shapes.BATCH_ORDER_CONTEXT, shapes.batch_order(row))


def _item(db: Any, order_id: int, key: str) -> Any:
    item_id = _item_id(key, "Product")
    _batch_order(db, order_id)
    row = db.execute(
        "SELECT * FROM items WHERE Id = ? AND BatchOrderId = ?", (item_id, order_id)
    ).fetchone()
    if row is None:
        raise HTTPException(404, f"no Product with Id {item_id} in BatchOrder {order_id}")
    return row


def _production_order(db: Any, item_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM production_orders WHERE Id = ?", (str(item_id),)).fetchone()
    if row is None:
        raise HTTPException(404, f"no ProductionOrder with Id '{item_id}'")
    return shapes.single(shapes.PRODUCTION_ORDER_CONTEXT, shapes.production_order(row))
