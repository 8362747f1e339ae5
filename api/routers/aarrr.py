"""AARRR: acquisition, activation, retention, revenue and referral over a window of shop weeks."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from api import aarrr
from api.auth import Reader
from api.dependencies import Store
from api.indexes import PORTRAITS_SPACE, PortraitSpace
from api.models import Aarrr
from api.routers.common import AUTH_ERRORS
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


@router.get(
    "/v1/aarrr",
    response_model=Aarrr,
    responses=AUTH_ERRORS,
    tags=["overview"],
)
async def get_aarrr(
    store: Store,
    _: Reader,
    start: Annotated[
        date | None,
        Query(
            alias="from",
            description="A day of the window's first shop week (YYYY-MM-DD); at most 51 weeks before the newest week. "
            "Default: three weeks before the last",
        ),
    ] = None,
    end: Annotated[
        date | None,
        Query(alias="to", description="A day of the window's last shop week (YYYY-MM-DD). Default: the newest week"),
    ] = None,
    activation_days: Annotated[
        int,
        Query(
            ge=1,
            le=aarrr.MAX_ACTIVATION_DAYS,
            description="N: a new user counts as activated by a first purchase less than N days after their first event",
        ),
    ] = 7,
) -> Aarrr:
    """AARRR of every user over whole shop weeks (Monday to Sunday), from running counters over the stored portraits.

    A window the figures cannot answer is a 422 like any invalid parameter, naming the parameter and why."""
    handler = store.handler(PORTRAITS_SPACE)
    counters = handler.aarrr_counters() if isinstance(handler, PortraitSpace) else {}
    try:
        weeks = aarrr.window(counters, start, end)
    except aarrr.WindowError as error:
        given = {"from": start, "to": end}[error.parameter]
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", error.parameter), "msg": str(error), "input": str(given)}]
        ) from None
    first, last = weeks if weeks is not None else (None, None)
    return aarrr.build(counters, first_week=first, last_week=last, activation_days=activation_days)
