"""Request bodies parsed as strict JSON: text that is not valid UTF-8 is a 422, not a crash later.

Python's ``json`` module accepts escaped lone surrogates (``"\\ud800"``), ``NaN`` and
``Infinity``; a string holding a surrogate then fails wherever it is encoded (an index key,
a cursor digest, an error message). orjson rejects all of these, and its
``JSONDecodeError`` is a ``json.JSONDecodeError``, so FastAPI answers 422 ``json_invalid``
with orjson's reason (e.g. "no low surrogate in string", "number is infinity when parsed as double").

>>> import asyncio
>>> async def receive():
...     return {"type": "http.request", "body": b'{"a": "\\\\ud800"}', "more_body": False}
>>> request = StrictJsonRequest({"type": "http", "method": "POST", "headers": []}, receive)
>>> try:
...     asyncio.run(request.json())
... except ValueError as error:
...     print(error)
no low surrogate in string...
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

class StrictJsonRequest(Request):
    """A request whose ``json()`` is orjson's."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route that hands its endpoint a :class:`StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
