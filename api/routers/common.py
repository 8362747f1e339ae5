"""What several routers share: the id path parameters and the documented error answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator
from starlette.convertors import PathConvertor, register_url_convertor

from api.models import Problem
from online_models.events import MAX_ID_LENGTH, USER_ID_PATTERN, printable


class UserIdConvertor(PathConvertor):
    """Starlette's ``path`` convertor, line breaks included: an id holding one reaches the route and is
    refused there (422 naming the character) like any other control character, instead of finding no
    route (404) or, at the end of the path, being matched without it (``$`` matches before a final
    line break, so ``DELETE /v1/users/u1%0A`` would erase ``u1``)."""

    regex = "(?s:.*)"


register_url_convertor("user_id", UserIdConvertor())
#: The user-id segment of a route's path: the rest of the path up to the route's suffix.
USER_ID_SEGMENT = "{user_id:user_id}"
#: The item-id and category segments, read the same way (ids with ``/`` work, sent as is or as ``%2F``).
ITEM_ID_SEGMENT = "{item_id:user_id}"
CATEGORY_SEGMENT = "{category:user_id}"

#: A user id in a path: the rest of the path up to the route's suffix, so ids with ``/`` work (sent as is or as ``%2F``).
UserIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="The user id events are keyed by (no control or bidirectional characters; '/' allowed)",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
    AfterValidator(printable),
]



def _id_path(description: str):
    return Annotated[
        str,
        Path(min_length=1, max_length=MAX_ID_LENGTH, description=description, json_schema_extra={"pattern": USER_ID_PATTERN}),
        AfterValidator(printable),
    ]


#: An item id in a path, as the events' ``item_id``.
ItemIdPath = _id_path("The item id as sent in the events' item_id (no control or bidirectional characters; '/' allowed)")
#: A category in a path, as the events' ``category``.
CategoryPath = _id_path("The category as sent in the events' category (no control or bidirectional characters; '/' allowed)")

AUTH_ERRORS = {
    401: {"model": Problem, "description": "Missing or invalid bearer token"},
    403: {"model": Problem, "description": "The token's role is too weak"},
}
#: Answers of every operation with a JSON request body: bytes that are not JSON text are a 400.
BODY_ERRORS = {
    400: {"model": Problem, "description": "The body is not JSON"},
    413: {"model": Problem, "description": "The body is larger than PORTRAITS_API_MAX_BODY_BYTES"},
    **AUTH_ERRORS,
}
#: Answers of the bounded queries (:class:`api.limits.QueryGate`).
QUERY_ERRORS = {
    503: {"model": Problem, "description": "Too many queries at once; retry after Retry-After seconds"},
    504: {"model": Problem, "description": "The query ran past PORTRAITS_API_QUERY_TIMEOUT_SECONDS"},
}
