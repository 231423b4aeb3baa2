"""The token endpoint and Bearer tokens of the local service.

The notebook gets its token from Keycloak with a password grant (hook-contract.md §1,
service-and-scale.md): a form POST of ``grant_type=password``, ``client_id=ordering``,
``username``, ``password`` to ``TOKEN_PATH``; the answer carries ``access_token``,
``expires_in`` and ``token_type``. We answer the same way, with Keycloak's error shape
(``{"error": ..., "error_description": ...}``) when the grant is refused.

Ours:
- users: without ``--users FILE`` any non-empty user name with any password gets a token (a
  local service; the point is that the client sends one). ``--users FILE`` is a JSON object
  ``{"user": "password", ...}`` (:func:`load_users`): then only those pairs get a token.
- tokens are random (``secrets.token_urlsafe``); the store keeps only their SHA-256 with the user
  and the expiry, so they survive a restart of the server over the same data dir and expire
  ``expires_in`` seconds (default 3600) after they were issued. No refresh tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError
from .store import Store

TOKEN_PATH = "/auth/realms/dedl/protocol/openid-connect/token"
CLIENT_ID = "ordering"
DEFAULT_LIFETIME = 3600.0


def load_users(path: Path) -> dict[str, str]:
    """The ``--users FILE``: a JSON object of user name -> password (strings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--users {path}: cannot read it ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(
            f'--users {path}: not JSON ({exc}); write an object {{"user": "password"}}'
        ) from None
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in data.items())
    ):
        raise UserError(
            f'--users {path}: write a non-empty JSON object {{"user": "password", ...}} '
            "with string names and passwords"
        )
    return dict(data)


class TokenError(Exception):
    """A refused grant: Keycloak's error JSON with this HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


class Tokens:
    """Issues and checks access tokens; their hashes live in the store's ``tokens`` table."""

    def __init__(
        self,
        store: Store,
        users: Mapping[str, str] | None = None,
        *,
        lifetime: float = DEFAULT_LIFETIME,
    ) -> None:
        self.store = store
        self.users = dict(users) if users is not None else None
        self.lifetime = lifetime

    def grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        """The token response for a password grant, or :class:`TokenError`."""
        grant_type = form.get("grant_type", "")
        if grant_type != "password":
            raise TokenError(
                400,
                "unsupported_grant_type",
                f"grant_type {grant_type!r} is not supported; use grant_type=password",
            )
        client_id = form.get("client_id", "")
        if client_id != CLIENT_ID:
            raise TokenError(
                401,
                "invalid_client",
                f"unknown client_id {client_id!r}; this service's client is {CLIENT_ID!r}",
            )
        user, password = form.get("username", ""), form.get("password", "")
        if not user or not self._accepts(user, password):
            raise TokenError(401, "invalid_grant", "Invalid user credentials")
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.store.write() as db:
            db.execute("DELETE FROM tokens WHERE expires < ?", (now,))
            db.execute(
                "INSERT INTO tokens (hash, user, expires) VALUES (?, ?, ?)",
                (_hash(token), user, now + self.lifetime),
            )
        return {
            "access_token": token,
            "expires_in": int(self.lifetime),
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "",
        }

    def _accepts(self, user: str, password: str) -> bool:
        if self.users is None:
            return True
        expected = self.users.get(user)
        # compare_digest on both branches: the answer's timing does not tell which users exist.
        if expected is None:
            hmac.compare_digest(password.encode(), password.encode())
            return False
        return hmac.compare_digest(expected.encode(), password.encode())

    def user_of(self, authorization: str | None) -> str | None:
        """The user of a valid, unexpired ``Authorization: Bearer`` header, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        row = (
            self.store.connection()
            .execute("SELECT user, expires FROM tokens WHERE hash = ?", (_hash(token),))
            .fetchone()
        )
        if row is None or row["expires"] < time.time():
            return None
        user: str = row["user"]
        # A user removed from --users since the token was issued no longer gets in.
        if self.users is not None and user not in self.users:
            return None
        return user


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
