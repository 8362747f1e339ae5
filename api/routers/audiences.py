"""Audiences: a page of the users matching a filter, or all of them as CSV (operator role)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from api import audiences
from api.auth import Operator, Reader
from api.dependencies import Queries, Store
from api.isolation import audience_answer, audience_selection, isolated
from api.models import AudienceExport, AudienceQuery, AudienceResult, Problem
from api.routers.common import BODY_ERRORS, QUERY_ERRORS
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


@router.post(
    "/v1/audiences/query",
    response_model=AudienceResult,
    responses={
        **BODY_ERRORS,
        400: {"model": Problem, "description": "The body is not JSON, or a cursor that does not fit the filter"},
        **QUERY_ERRORS,
    },
    tags=["audiences"],
)
async def query_audience(query: AudienceQuery, store: Store, _: Reader, queries: Queries) -> AudienceResult:
    """A page of the users matching a filter, with the chosen fields; the exact size of the whole
    audience when asked (``exact_count``) or found anyway, else an estimate."""
    try:
        after = audiences.decode_cursor(query.filter, query.cursor) if query.cursor else None
    except audiences.BadCursor as error:
        raise HTTPException(400, str(error)) from None
    return await queries.run(partial(audience_answer, store, query, after), isolated=isolated(audience_answer, query, after))


@router.post(
    "/v1/audiences/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "user_id, then the chosen fields"},
        **BODY_ERRORS,
        **QUERY_ERRORS,
    },
    tags=["audiences"],
)
async def export_audience(export: AudienceExport, store: Store, _: Operator, queries: Queries) -> StreamingResponse:
    """The whole audience as CSV (operator role). Nested values are JSON; formula-like text is quoted.
    The users are selected under the query deadline; their fields are read as the download goes."""
    selection = await queries.run(
        partial(audience_selection, store, export.filter), isolated=isolated(audience_selection, export.filter)
    )
    return StreamingResponse(  # the rows read the live store: the selection's snapshot goes with this call
        audiences.csv_rows(store, selection.users, export.fields),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="audience.csv"',
            "X-Audience-Count": str(len(selection.users)),
        },
    )
