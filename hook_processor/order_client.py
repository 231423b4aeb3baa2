"""A small client of a Hook order service: the live one or ``hook-processor serve``.

It uses only the calls and JSON shapes recorded from the live API (hook-contract.md §2, §3):
a Keycloak password grant for the token, ``POST BatchOrder/OData.CSC.Order`` (the order Id is
``value.Id``), ``GET BatchOrder(id)/Products`` for the items' statuses (an order is finished when
every item is), ``GET BatchOrder(id)/Product(id)/$value`` followed through its redirect. Calls the
recorded DEDL API does not show are used only where nothing recorded does the job: cancel
(``BatchOrder(id)/OData.CSC.Cancel``, the CDSE documentation's family) and ``GET BatchOrder(id)``
(for ``status``; when it is missing the order's status is derived from its items).

Standard library only (urllib), so that it adds no dependency. Library code: it raises, it never
prints or exits (the ``order`` command does).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from hook_processor.errors import UserError

FINISHED = ("completed", "failed", "cancelled")
CLIENT_ID = "ordering"


class ServiceError(UserError):
    """The service refused a request (4xx): its status and its ``detail``, in the message."""

    def __init__(self, message: str, *, status: int, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class UnreachableError(UserError):
    """The service could not be reached, or answered with a server error or something not JSON."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Who asks: a user name and password for the token URL, or a token obtained elsewhere."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # never the secrets
        return f"Credentials(username={self.username!r})"


class _StripAuthOnRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping ``Authorization`` when the host changes: ``$value`` answers
    with a presigned link, which carries its own signature (S3 refuses two auth mechanisms),
    and a bearer token must not travel to another host anyway (requests does the same)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc
            if urllib.parse.urlsplit(newurl).netloc != old_host:
                new.remove_header("Authorization")
        return new


class HookClient:
    """One service root (ending ``/odata/v1/``) and its token URL."""

    def __init__(
        self,
        service_url: str,
        token_url: str | None,
        credentials: Credentials,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.service_url = service_url if service_url.endswith("/") else service_url + "/"
        self.token_url = token_url
        self._credentials = credentials
        self._token = credentials.token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_StripAuthOnRedirect())

    # --- the calls -------------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST the order; the BatchOrder as the service echoes it (``value``)."""
        answer = self._json("POST", "BatchOrder/OData.CSC.Order", body=body)
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, dict) or "Id" not in value:
            raise UnreachableError(
                f"{self.service_url}BatchOrder/OData.CSC.Order answered without value.Id; "
                "is --service the service root (ending /odata/v1/)?"
            )
        return value

    def products(self, order_id: int | str) -> list[dict[str, Any]]:
        """The order's items (``BatchOrder(id)/Products``)."""
        answer = self._json("GET", f"BatchOrder({order_id})/Products")
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, list):
            raise UnreachableError(f"BatchOrder({order_id})/Products answered without a value")
        return [v for v in value if isinstance(v, dict)]

    def order(self, order_id: int | str) -> dict[str, Any] | None:
        """The BatchOrder (``BatchOrder(id)``), or None where the service has no such call."""
        try:
            answer = self._json("GET", f"BatchOrder({order_id})")
        except ServiceError as exc:
            if exc.status in (404, 405, 501):
                self.products(order_id)  # a 404 there too: the order is unknown (raises)
                return None
            raise
        value = answer.get("value", answer) if isinstance(answer, dict) else None
        return value if isinstance(value, dict) else None

    def option_types(self, workflow: str) -> dict[str, str]:
        """The workflow's option ``Type``s by lower-case name (``Workflows?$expand=WorkflowOptions
        &$filter=(Name eq '...')``, the tutorial's call); {} where the service has none."""
        quoted = workflow.replace("'", "''")
        path = f"Workflows?$expand=WorkflowOptions&$filter=(Name eq '{quoted}')"
        try:
            answer = self._json("GET", path)
        except (ServiceError, UnreachableError):
            return {}
        types: dict[str, str] = {}
        for entry in answer.get("value") or [] if isinstance(answer, dict) else []:
            for option in entry.get("WorkflowOptions") or []:
                if isinstance(option, dict) and isinstance(option.get("Type"), str):
                    types[str(option.get("Name")).lower()] = option["Type"]
        return types

    def cancel(self, order_id: int | str) -> None:
        self._request("POST", f"BatchOrder({order_id})/OData.CSC.Cancel", body={}).close()

    def download(self, order_id: int | str, product_id: int | str, target: Path) -> int:
        """``$value`` of one product into ``target`` (written whole or not at all); bytes."""
        path = f"BatchOrder({order_id})/Product({product_id})/$value"
        partial = target.with_name(target.name + ".part")
        with self._request("GET", path) as response, partial.open("wb") as out:
            shutil.copyfileobj(cast(BinaryIO, response), out, 1024 * 1024)
        size = partial.stat().st_size
        partial.replace(target)
        return size

    def wait(
        self,
        order_id: int | str,
        *,
        interval: float = 1.0,
        timeout: float | None = None,
        on_change: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll the order's items until every one is finished; the last items."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: list[tuple[Any, Any, Any]] | None = None
        while True:
            items = self.products(order_id)
            state = [(i.get("Id"), i.get("Status"), i.get("StatusMessage")) for i in items]
            if state != seen and on_change is not None:
                on_change(items)
            seen = state
            if items and all(i.get("Status") in FINISHED for i in items):
                return items
            if deadline is not None and time.monotonic() > deadline:
                raise UnreachableError(f"order {order_id} did not finish in {timeout:g} s")
            time.sleep(interval)

    # --- HTTP ------------------------------------------------------------------------------

    def token(self) -> str:
        """A bearer token: the given one, or a password grant at the token URL (as the Hook's
        Keycloak: form fields grant_type=password, client_id=ordering, username, password)."""
        if self._token is not None:
            return self._token
        creds = self._credentials
        if not self.token_url:
            raise UserError("no token URL: give --token-url (or HOOK_TOKEN_URL)")
        if creds.username is None or creds.password is None:
            raise UserError("no credentials: set DESP_USERNAME and DESP_PASSWORD")
        form = urllib.parse.urlencode(
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "username": creds.username,
                "password": creds.password,
            }
        ).encode()
        request = urllib.request.Request(
            self.token_url,
            data=form,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = self._read_json(self._open(request, what=f"token URL {self.token_url}"))
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise UnreachableError(f"the token URL {self.token_url} answered without access_token")
        self._token = token
        return token

    def _json(self, method: str, path: str, *, body: Mapping[str, Any] | None = None) -> Any:
        return self._read_json(self._request(method, path, body=body))

    def _request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None) -> Any:
        url = self.service_url + urllib.parse.quote(path, safe="/()$,'=&?:")
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                return self._open(request, what=f"{method} {path}", raise_401=attempt == 1)
            except _Expired:
                # A token that expired while we waited: fetch a new one, once.
                if self._credentials.token is not None:
                    raise ServiceError(
                        f"{method} {path}: 401, the token was refused", status=401
                    ) from None
                self._token = None
        raise AssertionError("unreachable")

    def _open(self, request: urllib.request.Request, *, what: str, raise_401: bool = False) -> Any:
        try:
            return self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _detail(exc.read())
            if exc.code == 401 and raise_401:
                raise _Expired() from None
            if 400 <= exc.code < 500:
                raise ServiceError(
                    f"{what}: {exc.code} {_describe(detail) or exc.reason}",
                    status=exc.code,
                    detail=detail,
                ) from None
            raise UnreachableError(
                f"{what}: {exc.code} {_describe(detail) or exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError(f"{what}: cannot reach {request.full_url} ({reason})") from None

    @staticmethod
    def _read_json(response: Any) -> Any:
        with response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise UnreachableError(
                f"{response.geturl()} answered something that is not JSON"
            ) from None


class _Expired(Exception):
    pass


def _detail(raw: bytes) -> Any:
    try:
        loaded = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:500] or None
    return loaded.get("detail", loaded) if isinstance(loaded, dict) else loaded


def _describe(detail: Any) -> str:
    """A service's error detail as text: FastAPI-style entries become ``loc: msg`` lines."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        lines = []
        for entry in detail:
            if isinstance(entry, dict):
                loc = ".".join(str(p) for p in entry.get("loc", ()) if p != "body")
                lines.append(f"{loc}: {entry.get('msg')}" if loc else str(entry.get("msg")))
            else:
                lines.append(str(entry))
        return "; ".join(lines)
    return json.dumps(detail)


# --- order bodies ---------------------------------------------------------------------------


def order_body(
    *,
    workflow: str,
    name: str | None,
    identifiers: Sequence[str],
    file_body: Mapping[str, Any] | None,
    options: Mapping[str, str],
    priority: int | None,
    types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The BatchOrder body: the options file (an order body, or a ``{name: value}`` object),
    then ``--option`` pairs over it; ``IdentifierList`` from ``--identifier`` (else the file's,
    else empty: the service makes one item)."""
    body: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
    if file_body is not None:
        if "WorkflowOptions" in file_body or "WorkflowName" in file_body:
            body = {k: v for k, v in file_body.items() if k != "WorkflowOptions"}
            listed = [dict(o) for o in file_body.get("WorkflowOptions") or []]
        else:
            listed = [{"Name": k, "Value": v} for k, v in file_body.items()]
    by_name = {str(o.get("Name")).lower(): i for i, o in enumerate(listed)}
    for key, raw in options.items():
        entry = {"Name": key, "Value": option_value(raw, (types or {}).get(key.lower()))}
        if key.lower() in by_name:
            listed[by_name[key.lower()]] = entry
        else:
            by_name[key.lower()] = len(listed)
            listed.append(entry)
    body["WorkflowName"] = workflow
    body["Name"] = name or body.get("Name") or f"hook-processor order {workflow}"
    if identifiers:
        body["IdentifierList"] = list(identifiers)
    body.setdefault("IdentifierList", [])
    body["WorkflowOptions"] = listed
    if priority is not None:
        body["Priority"] = priority
    return body


def option_value(raw: str, kind: str | None) -> Any:
    """A ``--option`` value as JSON: a number or a boolean where the Workflow's WorkflowOptions
    give the option that ``Type`` (the DEDL tutorial sends ``sleep_time`` and ``timespan`` as
    JSON numbers, its ``VALUE_TYPE=int``); otherwise, or when it does not parse, the string."""
    kind = (kind or "").lower()
    text = raw.strip()
    try:
        if kind in ("int", "integer"):
            return int(text)
        if kind in ("float", "number"):
            return float(text)
    except ValueError:
        return raw  # the service names the bad value (422)
    if kind in ("bool", "boolean") and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return raw


def summarize(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Item counts by status, in the order of the status words."""
    counts: dict[str, int] = {}
    for status in ("queued", "in_progress", *FINISHED):
        counts[status] = 0
    for item in items:
        status = str(item.get("Status"))
        counts[status] = counts.get(status, 0) + 1
    return {k: v for k, v in counts.items() if v}


def outcome(items: Sequence[Mapping[str, Any]]) -> str:
    """An order's status from its items: failed if any failed, else cancelled if any was,
    else completed when all are; otherwise in_progress or queued."""
    statuses = {str(i.get("Status")) for i in items}
    if not items:
        return "queued"
    if statuses <= set(FINISHED):
        if "failed" in statuses:
            return "failed"
        if "cancelled" in statuses:
            return "cancelled"
        return "completed"
    return "in_progress" if statuses - {"queued"} else "queued"
