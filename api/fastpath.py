"""Portrait lookups answered before the framework: the API's hottest request at a fraction of the cost.

``GET /v1/users/{user_id}/portrait`` with a valid token and a stored portrait is answered
here, in a plain ASGI middleware: check the token, read the stored JSON, send it. FastAPI's
routing, dependency solving and response classes cost several times the RocksDB read
(``BENCHMARKS.md``, section API). Every other request, and every lookup that is not the plain
case (no or an unknown token, an id the path contract rejects, no portrait, a root path, HEAD),
goes on to the FastAPI route, which answers it with its usual statuses and messages: the
route stays the one definition of the endpoint's behaviour and of its OpenAPI description,
and this only skips the work for answers that route would give the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Role, TokenRegistry
from api.indexes import PORTRAITS_SPACE
from api.routers.common import USER_ID_SEGMENT
from online_models.events import FORBIDDEN_CHARACTERS, MAX_ID_LENGTH

PREFIX = "/v1/users/"
SUFFIX = "/portrait"
TEMPLATE = PREFIX + USER_ID_SEGMENT + SUFFIX
#: The path contract of a user id (``api.routers.common.UserIdPath``): 1 to 128 characters, none forbidden, ``/`` allowed.
_VALID_ID = re.compile(f"[^{FORBIDDEN_CHARACTERS}]{{1,{MAX_ID_LENGTH}}}").fullmatch
_JSON = b"application/json"


def bearer_token(scope: Scope) -> str | None:
    """The token of the first ``Authorization: Bearer <token>`` header, read as FastAPI's
    ``HTTPBearer`` reads it; None when there is none.

    >>> bearer_token({"headers": [(b"authorization", b"bearer abc")]}), bearer_token({"headers": []})
    ('abc', None)
    """
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None


class PortraitFastPath:
    """ASGI middleware that serves stored portraits to readers without entering FastAPI.

    ``api`` is the FastAPI app (its ``state.store`` and ``state.tokens``); the endpoint's route,
    found in ``routes`` (default: the app's own), goes into the scope for the metrics label;
    ``stored_id`` maps a user id to the key it is stored under (the pseudonym when one is configured).
    """

    def __init__(self, app: ASGIApp, *, api, stored_id: Callable[[str], str], routes: Iterable | None = None):
        self.app = app
        self.state = api.state
        self.stored_id = stored_id
        routes = api.router.routes if routes is None else routes
        self.route = next((r for r in routes if getattr(r, "path", None) == TEMPLATE), None)

    def _portrait(self, scope: Scope) -> bytes | None:
        """The stored JSON to answer with, or None when the request is not the plain case."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        user_id = path[len(PREFIX) : -len(SUFFIX)]
        if not _VALID_ID(user_id):
            return None
        token = bearer_token(scope)
        tokens: TokenRegistry | None = getattr(self.state, "tokens", None)
        store = getattr(self.state, "store", None)
        if token is None or tokens is None or store is None:
            return None
        principal = tokens.authenticate(token)
        if principal is None or principal.role < Role.reader:
            return None
        return store.get(PORTRAITS_SPACE, self.stored_id(user_id))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = self._portrait(scope)
        if raw is None:
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(raw)).encode()), (b"content-type", _JSON)],
            }
        )
        await send({"type": "http.response.body", "body": raw})
