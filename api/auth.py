"""Bearer-token access control with three roles: reader < operator < admin.

Tokens and their roles come from ``PORTRAITS_API_TOKENS`` (``token1:admin,token2:reader``)
or from ``create_app(tokens=...)``. With none configured, the API makes up one
admin token at start and prints it once to stderr. Tokens are kept only as
SHA-256 digests and never logged; a :class:`Principal` carries a short
fingerprint that is safe to log.

>>> parse_tokens("alpha-token:admin, beta-token:reader")
{'alpha-token': <Role.admin: 3>, 'beta-token': <Role.reader: 1>}
>>> parse_tokens("alpha-token:root")
Traceback (most recent call last):
...
ValueError: PORTRAITS_API_TOKENS entry 1: role 'root' is not one of reader, operator, admin
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, TextIO

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from online_models.settings import ApiSettings


class Role(IntEnum):
    """What a token may do; each role may do everything the lower ones may."""

    reader = 1  # portraits, audiences, overview, alerts, models
    operator = 2  # + CSV exports, HTTP ingestion
    admin = 3  # + erasure of users (and their requests' status)


def parse_tokens(spec: str) -> dict[str, Role]:
    """Tokens and roles from ``token:role`` pairs separated by commas (messages never show a token)."""
    tokens: dict[str, Role] = {}
    for position, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        token, sep, role = entry.rpartition(":")
        token, role = token.strip(), role.strip()
        if not sep or not token:
            raise ValueError(f"PORTRAITS_API_TOKENS entry {position}: expected token:role")
        if role not in Role.__members__:
            raise ValueError(f"PORTRAITS_API_TOKENS entry {position}: role {role[:20]!r} is not one of reader, operator, admin")
        tokens[token] = Role[role]
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role and a fingerprint of the token (safe to log)."""

    role: Role
    token_id: str


class TokenRegistry:
    """Known tokens (as digests) and their roles."""

    def __init__(self, tokens: Mapping[str, Role | str]):
        self._roles: dict[bytes, Role] = {}
        for token, role in tokens.items():
            if not token:
                raise ValueError("an API token must not be empty")
            self._roles[_digest(token)] = role if isinstance(role, Role) else Role[role]

    def __len__(self) -> int:
        return len(self._roles)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a presented token, or None when it is unknown."""
        digest = _digest(token)
        role = self._roles.get(digest)
        return None if role is None else Principal(role, digest[:4].hex())

    @classmethod
    def configure(
        cls,
        tokens: Mapping[str, Role | str] | None = None,
        settings: ApiSettings | None = None,
        *,
        announce: TextIO | None = None,
    ) -> "TokenRegistry":
        """Tokens given, else from ``PORTRAITS_API_TOKENS``, else one fresh admin token printed to stderr."""
        if tokens is None:
            settings = settings or ApiSettings()
            spec = settings.api_tokens.get_secret_value() if settings.api_tokens else ""
            tokens = parse_tokens(spec)
        if not tokens:
            token = secrets.token_urlsafe(24)
            print(
                "portraits api: no PORTRAITS_API_TOKENS configured; admin token for this run "
                f"(not shown again): {token}",
                file=announce or sys.stderr,
                flush=True,
            )
            tokens = {token: Role.admin}
        return cls(tokens)


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from PORTRAITS_API_TOKENS; its role (reader, operator, admin) decides what it may do.",
)


def token_problem(registry: TokenRegistry, token: str | None) -> HTTPException | None:
    """The 401 for a missing or unknown token (None when the token is known); shared with :mod:`api.limits`."""
    if token is None:
        return HTTPException(
            401,
            "missing bearer token: send the header 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if registry.authenticate(token) is None:
        return HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return None


async def get_tokens(request: Request) -> TokenRegistry:
    """The app's tokens (async: a plain function dependency would cost a hop to a worker thread)."""
    return request.app.state.tokens


Tokens = Annotated[TokenRegistry, Depends(get_tokens)]


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits tokens of ``role`` or a higher one (401 without a valid token, 403 below it)."""

    def check(registry: TokenRegistry, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        problem = token_problem(registry, None if credentials is None else credentials.credentials)
        if problem is not None:
            raise problem
        principal = registry.authenticate(credentials.credentials)
        if principal.role < role:
            raise HTTPException(
                403, f"this needs the {role.name} role or higher; the token has the {principal.role.name} role"
            )
        return principal

    # async, although it does not wait: FastAPI runs a plain function dependency on a worker
    # thread, and that hop costs more than the check itself
    async def dependency(
        registry: Tokens, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        return check(registry, credentials)

    dependency.__name__ = f"require_{role.name}"
    dependency.check = check
    return dependency


def require_header_or_query(role: Role) -> Callable[..., Principal]:
    """Like :func:`require`, but also accepts the token as the ``token`` query parameter, for
    clients that cannot send headers (a browser's ``EventSource``). The header wins when both
    are sent. Only for read-only streams: a URL may end up in places a header does not."""
    check = require(role).check

    async def dependency(
        request: Request,
        registry: Tokens,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            token = request.query_params.get("token")
            if token:
                credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        return check(registry, credentials)

    dependency.__name__ = f"require_{role.name}_header_or_query"
    return dependency


Reader = Annotated[Principal, Depends(require(Role.reader))]
StreamReader = Annotated[Principal, Depends(require_header_or_query(Role.reader))]
Operator = Annotated[Principal, Depends(require(Role.operator))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
