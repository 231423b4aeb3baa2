"""Tokens over a real uvicorn server: the Keycloak-shaped grant, 401s, expiry, restarts, --users."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import ApiServer, order_service

from hook_processor.errors import UserError
from hook_processor.s3server import S3Server
from hook_processor.service.auth import load_users
from hook_processor.service.store import Store

GRANT = {"grant_type": "password", "client_id": "ordering", "username": "u", "password": "p"}
CALLS = [
    ("get", "Workflows"),
    ("get", "BatchOrders"),
    ("get", "BatchOrder(1)"),
    ("get", "BatchOrder(1)/Products"),
    ("get", "BatchOrder(1)/Product(1)/$value"),
    ("get", "ProductionOrders"),
    ("get", "ProductionOrders('1')"),
    ("post", "BatchOrder/OData.CSC.Order"),
    ("post", "BatchOrder(1)/OData.CSC.Cancel"),
    ("post", "ProductionOrder(1)/OData.CSC.Cancel"),
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "hook.sqlite3")


def _serve(store: Store, s3: S3Server, **kwargs: Any) -> ApiServer:
    return ApiServer(order_service(store, s3), store, s3=s3, **kwargs)


@pytest.fixture
def server(store: Store, s3_server: S3Server) -> Iterator[ApiServer]:
    api = _serve(store, s3_server)
    yield api
    api.stop()


def test_token_endpoint_answers_like_keycloak(server: ApiServer) -> None:
    answer = requests.post(server.token_url, data=GRANT, timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert body["expires_in"] == 3600
    assert answer.headers["Cache-Control"] == "no-store"
    ok = requests.get(
        server.root + "Workflows",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"client_id": "hda-public"}, 401, "invalid_client"),
        ({"username": ""}, 401, "invalid_grant"),
    ],
)
def test_refused_grants(server: ApiServer, change: dict[str, str], status: int, error: str) -> None:
    answer = requests.post(server.token_url, data={**GRANT, **change}, timeout=10)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


def test_token_request_must_be_a_form(server: ApiServer) -> None:
    answer = requests.post(server.token_url, json=GRANT, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in answer.json()["error_description"]


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_every_call_without_a_token_is_401(server: ApiServer, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dTpw"}):
        answer = requests.request(method, server.root + path, headers=headers, timeout=10)
        assert answer.status_code == 401, (path, headers)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.headers["Content-Type"] == "application/json"
        assert "/auth/realms/dedl/protocol/openid-connect/token" in answer.json()["detail"]


def test_root_needs_a_token_too(server: ApiServer) -> None:
    assert requests.get(server.root, timeout=10).status_code == 401
    assert server.session().get(server.root, timeout=10).status_code == 200


def test_tokens_expire(store: Store, s3_server: S3Server) -> None:
    api = _serve(store, s3_server, token_lifetime=3)
    try:
        answer = requests.post(api.token_url, data=GRANT, timeout=10)
        issued = time.monotonic()
        assert answer.json()["expires_in"] == 3
        session = api.session(answer.json()["access_token"])
        assert session.get(api.root + "Workflows", timeout=10).status_code == 200
        time.sleep(max(0.0, issued + 3.5 - time.monotonic()))
        late = session.get(api.root + "Workflows", timeout=10)
        assert late.status_code == 401
        assert "invalid or expired" in late.json()["detail"]
    finally:
        api.stop()


def test_token_survives_a_restart_over_the_same_data_dir(
    tmp_path: Path, s3_server: S3Server
) -> None:
    first = _serve(Store(tmp_path / "hook.sqlite3"), s3_server)
    token = first.token()
    first.stop()
    second = _serve(Store(tmp_path / "hook.sqlite3"), s3_server)
    try:
        answer = second.session(token).get(second.root + "Workflows", timeout=10)
        assert answer.status_code == 200
    finally:
        second.stop()
    # Only a hash of the token is kept in the file.
    assert token.encode() not in (tmp_path / "hook.sqlite3").read_bytes()


def test_users_file_restricts_who_gets_a_token(tmp_path: Path, s3_server: S3Server) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps({"alice": "wonder", "bob": "builder"}))
    users = load_users(users_file)
    api = _serve(Store(tmp_path / "hook.sqlite3"), s3_server, users=users)
    try:
        assert api.token("alice", "wonder")
        for user, password in (("alice", "wrong"), ("carol", "wonder"), ("bob", "")):
            answer = requests.post(
                api.token_url, data={**GRANT, "username": user, "password": password}, timeout=10
            )
            assert answer.status_code == 401
            assert answer.json() == {
                "error": "invalid_grant",
                "error_description": "Invalid user credentials",
            }
    finally:
        api.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "non-empty JSON object"),
        ('{"alice": 3}', "string names and passwords"),
    ],
)
def test_bad_users_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as caught:
        load_users(path)
    assert str(path) in str(caught.value)
    with pytest.raises(UserError, match="cannot read it"):
        load_users(tmp_path / "missing.json")
