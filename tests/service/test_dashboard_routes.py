"""The dashboard's routes over a real uvicorn server (no browser): the page and its files at ``/``,
their headers, the login rule and the page's own token (test_dashboard.py drives the page)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_server import ApiServer, order_service

from hook_processor.s3server import S3Server
from hook_processor.service.dashboard import ASSETS, is_loopback, needs_login
from hook_processor.service.store import Store

STATIC = Path(__file__).resolve().parents[2] / "hook_processor" / "service" / "static"


@pytest.fixture
def local(tmp_path: Path, s3_server: S3Server) -> Iterator[ApiServer]:
    """A service whose dashboard needs no login (what serve makes of 127.0.0.1 without --users)."""
    store = Store(tmp_path / "hook.sqlite3")
    server = ApiServer(order_service(store, s3_server), store, s3=s3_server, dashboard_login=False)
    yield server
    server.stop()


@pytest.fixture
def guarded(tmp_path: Path, s3_server: S3Server) -> Iterator[ApiServer]:
    """A service whose dashboard asks for a login (another address, or --users)."""
    store = Store(tmp_path / "hook.sqlite3")
    server = ApiServer(
        order_service(store, s3_server), store, s3=s3_server, users={"ana": "pw-ana"}
    )
    yield server
    server.stop()


def test_the_page_and_its_files_are_served_with_a_strict_policy(local: ApiServer) -> None:
    page = requests.get(local.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<h2 id="orders-heading"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    for name, kind in ASSETS.items():
        answer = requests.get(f"{local.url}/dashboard/{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == kind
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content == (STATIC / name).read_bytes()
    unknown = requests.get(local.url + "/dashboard/../app.py", timeout=10)
    assert unknown.status_code == 404


def test_the_page_loads_nothing_from_another_origin_and_has_no_inline_script() -> None:
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "a CDN or other origin"
    assert "<script>" not in page
    assert not re.search(r"<[^>]*\son\w+\s*=", page), "an inline event handler"
    scripts = sorted(STATIC.glob("*.js"))
    assert {p.name for p in scripts} == {n for n in ASSETS if n.endswith(".js")}
    for script in scripts:
        text = script.read_text()
        # The users' text (order names, StatusMessages, logs) reaches the DOM as text only.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name}: {sink}"
        # Nothing from another origin: imports are of the page's own files.
        for module in re.findall(r"""\bfrom\s+["']([^"']+)["']""", text):
            assert module.startswith("./"), f"{script.name} imports {module}"


def test_a_loopback_service_gives_the_page_a_token_that_reads_the_api(local: ApiServer) -> None:
    answer = requests.post(local.url + "/dashboard/token", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()["access_token"]
    for path in ("Workflows", "BatchOrders"):
        answer = local.session(token).get(local.root + path, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["value"] == []
    refused = local.session("not-a-token").get(local.root + "BatchOrders", timeout=10)
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example:8080"},  # DNS rebinding: another site's name on 127.0.0.1
        {"Origin": "http://attacker.example"},
    ],
)
def test_the_page_token_refuses_another_sites_name(local: ApiServer, headers: dict) -> None:
    answer = requests.post(local.url + "/dashboard/token", headers=headers, timeout=10)
    assert answer.status_code == 403
    assert "loopback name" in answer.json()["detail"]
    assert "access_token" not in answer.text


def test_a_guarded_service_gives_no_token_without_a_login(guarded: ApiServer) -> None:
    answer = requests.post(guarded.url + "/dashboard/token", timeout=10)
    assert answer.status_code == 403
    detail = answer.json()["detail"]
    assert "asks for a login" in detail and "grant_type=password" in detail
    # The page itself is served (it holds no data): it shows the login form.
    assert requests.get(guarded.url + "/", timeout=10).status_code == 200
    token = guarded.token("ana", "pw-ana")
    assert guarded.session(token).get(guarded.root + "BatchOrders", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
        ("127.0.0.1.example.org", False),
        ("", False),
    ],
)
def test_loopback_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_login_rule() -> None:
    assert needs_login("127.0.0.1", None) is False
    assert needs_login("::1", None) is False
    assert needs_login("127.0.0.1", {"ana": "pw"}) is True  # --users: loopback is not private
    assert needs_login("0.0.0.0", None) is True
    assert needs_login("10.1.2.3", None) is True
