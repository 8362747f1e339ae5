"""Portraits: one user's current portrait."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.auth import Reader
from api.dependencies import Store, StoredId
from api.indexes import PORTRAITS_SPACE
from api.models import Portrait, Problem
from api.routers.common import AUTH_ERRORS, USER_ID_SEGMENT, UserIdPath
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


@router.get(
    "/v1/users/" + USER_ID_SEGMENT + "/portrait",
    response_model=Portrait,
    responses={404: {"model": Problem, "description": "No portrait for this user"}, **AUTH_ERRORS},
    tags=["portraits"],
)
async def get_portrait(store: Store, _: Reader, user_id: UserIdPath, stored_id: StoredId) -> Response:
    """The user's current portrait."""
    # on the event loop: one RocksDB point read (block cache, then the page cache) takes
    # microseconds, less than handing the call to a worker thread and back; the stored
    # JSON is the answer as is (the worker wrote it in the Portrait contract)
    raw = store.get(PORTRAITS_SPACE, stored_id(user_id))
    if raw is None:
        raise HTTPException(404, f"no portrait for user {user_id!r}: no event or profile seen for this id")
    return Response(content=raw, media_type="application/json")
