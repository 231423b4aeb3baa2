"""The order dashboard at ``/``: a static page (``static/``: HTML, plain JavaScript, CSS; no build
step, nothing from a CDN) whose script calls the OData API of this same service with a Bearer token,
like any other client.

Routes (ours):

=========================  ====================================================================
``GET  /``                 the page (``static/index.html``)
``GET  /dashboard/NAME``   its scripts and style sheet (only the files of :data:`ASSETS`)
``POST /dashboard/token``  a token for the page without a login, only where no login is needed
=========================  ====================================================================

The login rule (:func:`needs_login`): a service that listens on a loopback address (``127.0.0.0/8``,
``::1``, ``localhost``) and has no ``--users`` file gives the page a token of its own (user
``dashboard``): anyone who can reach it can get a token from the token endpoint with any name and
password anyway. Everywhere else (another address, or ``--users``: on a machine shared by several
people, loopback is not private) ``/dashboard/token`` answers 403 and the page shows a login form
that asks the token endpoint for a token with the user's name and password, as the notebook does.
The page keeps the access token (never the password) in ``sessionStorage``: gone with the tab.

Nothing the page shows is rendered here: the script builds the DOM from the API's JSON with
``textContent`` (order names, StatusMessages and logs are the users' text), and every answer of
these routes carries a Content-Security-Policy that allows only this origin's own script, style and
API (no inline script: a name that slipped into the markup still would not run).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from importlib import resources
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from .auth import CLIENT_ID, TOKEN_PATH, Tokens

LOCAL_USER = "dashboard"
TOKEN_ROUTE = "/dashboard/token"
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",  # the page (a module importing the two next)
    "api.js": "text/javascript; charset=utf-8",  # tokens and the API calls
    "dom.js": "text/javascript; charset=utf-8",  # text-only DOM builders
    "dashboard.css": "text/css; charset=utf-8",
}
# 'self' only: the page's own files and the API of this origin. data: for the empty favicon.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``, ``[::1]``)."""
    if not host:
        return False
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def needs_login(host: str, users: Mapping[str, str] | None) -> bool:
    """Whether the page asks for a login: off loopback, or whenever ``--users`` names users."""
    return users is not None or not is_loopback(host)


def install_dashboard(app: FastAPI, tokens: Tokens, *, login: bool) -> None:
    """Add the dashboard's routes to ``app``; ``login``: :func:`needs_login`'s answer."""
    folder = resources.files("hook_processor.service") / "static"

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = (folder / "index.html").read_bytes()
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    @app.get("/dashboard/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no dashboard file {name!r}: the page is at /")
        return Response((folder / name).read_bytes(), media_type=ASSETS[name], headers=HEADERS)

    @app.post(TOKEN_ROUTE, include_in_schema=False)
    async def local_token(request: Request) -> JSONResponse:
        if login:
            return JSONResponse(
                {
                    "detail": "this service asks for a login (it listens on a non-loopback "
                    f"address, or has --users): POST grant_type=password, client_id={CLIENT_ID}, "
                    f"username, password to {TOKEN_PATH}"
                },
                status_code=403,
                headers=HEADERS,
            )
        _same_machine(request)
        form = {"grant_type": "password", "client_id": CLIENT_ID, "username": LOCAL_USER}
        body = await run_in_threadpool(tokens.grant, form)
        return JSONResponse(body, headers={**HEADERS, "Cache-Control": "no-store"})


def _same_machine(request: Request) -> None:
    """Refuse a request whose Host (or Origin) is not a loopback name: a web page of another
    site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name."""
    host = urlsplit("//" + request.headers.get("host", "")).hostname
    origin = request.headers.get("origin")
    if not is_loopback(host) or (origin is not None and not is_loopback(urlsplit(origin).hostname)):
        raise HTTPException(
            403,
            f"{TOKEN_ROUTE} answers only a page opened at a loopback name "
            "(http://127.0.0.1:PORT/ or http://localhost:PORT/)",
        )
