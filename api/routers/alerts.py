"""Churn alerts: the stored ones, and each new one as it arrives (server-sent events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime
from sse_starlette.sse import EventSourceResponse

from api.alerts import ALERTS_SPACE, AlertSpace, AlertStream, StreamLimit, recent_alerts
from api.auth import Reader, StreamReader
from api.dependencies import Store, StoredId
from api.models import AlertList, ChurnAlert, Problem
from api.routers.common import AUTH_ERRORS
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)

UserFilter = Annotated[str | None, Query(min_length=1, max_length=128)]
LayerFilter = Annotated[str | None, Query(min_length=1, max_length=64)]
RiskFilter = Annotated[float | None, Query(ge=0, le=1)]


@router.get("/v1/alerts", response_model=AlertList, responses=AUTH_ERRORS, tags=["alerts"])
def list_alerts(
    store: Store,
    _: Reader,
    stored_id: StoredId,
    user_id: UserFilter = None,
    layer: LayerFilter = None,
    min_risk: RiskFilter = None,
    since: Annotated[AwareDatetime | None, Query(description="Only alerts at or after this instant (ISO-8601 with offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Stored churn alerts, most recent (event time) first."""
    since_ms = None if since is None else int(since.timestamp() * 1000)
    user_id = None if user_id is None else stored_id(user_id)
    found = recent_alerts(store, user_id=user_id, layer=layer, min_risk=min_risk, since_ms=since_ms, limit=limit)
    return AlertList(count=len(found), alerts=[ChurnAlert.model_validate(a) for a in found])


@router.get(
    "/v1/alerts/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "event: alert, data: one alert"},
        429: {"model": Problem, "description": "This token has PORTRAITS_API_STREAMS_PER_TOKEN streams open"},
        503: {"model": Problem, "description": "PORTRAITS_API_STREAMS_TOTAL streams are open"},
        **AUTH_ERRORS,
    },
    tags=["alerts"],
)
async def stream_alerts(
    store: Store,
    principal: StreamReader,
    stored_id: StoredId,
    user_id: UserFilter = None,
    layer: LayerFilter = None,
    min_risk: RiskFilter = None,
) -> EventSourceResponse:
    """Server-sent events: each new alert as it arrives (``event: alert``). A client that
    falls behind gets ``event: dropped`` with how many alerts it missed. Browsers' EventSource
    cannot send headers, so this endpoint also takes the token as ``?token=``."""
    handler = store.handlers.get(ALERTS_SPACE)
    if not isinstance(handler, AlertSpace):
        raise HTTPException(503, "this store does not follow churn alerts")
    user_id = None if user_id is None else stored_id(user_id)
    filters = {k: v for k, v in {"user_id": user_id, "layer": layer, "min_risk": min_risk}.items() if v is not None}
    try:
        subscription = handler.hub.subscribe(principal.token_id, **filters)
    except StreamLimit as error:
        raise HTTPException(error.status, error.detail, headers={"Retry-After": "5"}) from None
    return AlertStream(handler.hub, subscription)
