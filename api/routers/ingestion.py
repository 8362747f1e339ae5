"""Ingestion over HTTP: a batch of events validated like the stream does and written to the events topic."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import Operator
from api.dependencies import AppSettings, Metrics, Sink
from api.ingest import EventLogUnavailable, admission_bounds, parse_batch, read_body, validate, wall_clock_ms
from api.models import IngestResult, Problem
from api.routers.common import AUTH_ERRORS
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


@router.post(
    "/v1/events",
    response_model=IngestResult,
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        413: {"model": Problem, "description": "The body is too large"},
        422: {"model": Problem, "description": "JSON, but not a batch of events, or too many of them"},
        503: {"model": Problem, "description": "Kafka did not acknowledge the events; retry"},
        **AUTH_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "object"}},
                            {
                                "type": "object",
                                "properties": {"events": {"type": "array", "items": {"type": "object"}}},
                                "required": ["events"],
                            },
                        ]
                    }
                }
            },
        }
    },
    tags=["events"],
)
async def ingest_events(
    request: Request, _: Operator, settings: AppSettings, sink: Sink, metrics: Metrics
) -> IngestResult:
    """Validate a batch of events (a JSON array, or ``{"events": [...]}``) like the stream does and
    write the valid ones to the events topic; the answer comes once Kafka has them all."""
    body = await read_body(request, settings.api_max_body_bytes)

    def run() -> IngestResult:
        items = parse_batch(body, settings.api_max_events)
        records, errors = validate(items, now_ms=wall_clock_ms(), **admission_bounds(settings))
        try:
            sink.write(records)
        except EventLogUnavailable as error:
            raise HTTPException(
                503, f"{error}; no event of this request is confirmed: retry it (event ids make retries safe)"
            ) from None
        if records:
            metrics.events.labels("accepted").inc(len(records))
        for error in errors:
            metrics.events.labels(error.reason).inc()
        return IngestResult(accepted=len(records), rejected=len(errors), errors=errors)

    return await run_in_threadpool(run)
