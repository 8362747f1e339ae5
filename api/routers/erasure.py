"""Erasure on request: erase a user (admin role) and follow the request until this API has dropped them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool

from api.auth import Admin
from api.dependencies import AppSettings, Sink, Store
from api.erasures import ERASURES_SPACE, ErasureLedger, status
from api.ingest import EventLogUnavailable, wall_clock_ms
from api.models import ErasureAccepted, ErasureStatus, Problem
from api.routers.common import AUTH_ERRORS, USER_ID_SEGMENT, UserIdPath
from api.strict_json import StrictJsonRoute
from online_models.erasure import ErasureRequest
from online_models.portrait import iso
from online_models.topic_names import ERASURES

router = APIRouter(route_class=StrictJsonRoute)


@router.delete(
    "/v1/users/" + USER_ID_SEGMENT,
    status_code=202,
    response_model=ErasureAccepted,
    responses={503: {"model": Problem, "description": "Kafka did not confirm the request; retry"}, **AUTH_ERRORS},
    tags=["portraits"],
)
async def erase_user(store: Store, _: Admin, user_id: UserIdPath, settings: AppSettings, sink: Sink) -> ErasureAccepted:
    """Erase everything about the user (admin role). The request is in Kafka when this answers;
    the workers erase the user's state, portrait, profile and alerts, and the request's status
    turns ``completed`` once this API has dropped them too. Asking again is harmless."""
    erasure = ErasureRequest(request_id=uuid.uuid4().hex, user_id=user_id, requested_at=wall_clock_ms())

    def run() -> ErasureAccepted:
        ErasureLedger.record(store, erasure.request_id, erasure.requested_at)
        try:
            sink.write([(user_id.encode(), erasure.to_bytes())], topic=settings.topic(ERASURES))
        except EventLogUnavailable as error:
            store.put_local(ERASURES_SPACE, erasure.request_id.encode(), None)
            raise HTTPException(503, f"{error}; the erasure was not requested: retry") from None
        return ErasureAccepted(
            request_id=erasure.request_id, status="pending", status_url=f"/v1/erasures/{erasure.request_id}"
        )

    return await run_in_threadpool(run)


@router.get(
    "/v1/erasures/{request_id}",
    response_model=ErasureStatus,
    responses={404: {"model": Problem, "description": "No such erasure request"}, **AUTH_ERRORS},
    tags=["portraits"],
)
def get_erasure(store: Store, _: Admin, request_id: str = Path(min_length=1, max_length=128)) -> ErasureStatus:
    """Where an erasure request stands: ``pending`` until this API has dropped the user's
    portrait and alerts, then ``completed``."""
    record = ErasureLedger.lookup(store, request_id)
    if record is None:
        raise HTTPException(404, f"no erasure request {request_id!r} is known to this API")

    steps = record.get("steps") or {}
    return ErasureStatus(
        request_id=request_id,
        status=status(record),
        requested_at=iso(record.get("requested_at")),
        completed_at=iso(record.get("completed_at")),
        portrait_removed=iso(steps.get("portraits")),
        alerts_removed=iso(steps.get("alerts")),
    )
