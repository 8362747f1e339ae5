"""The query side: a FastAPI service over the materialised portraits, alerts and models.

Every endpoint but ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <token>``
(:mod:`api.auth`); readers query, operators also export and ingest, admins erase users.
With ``PORTRAITS_PSEUDONYM_KEY`` set, a user id given in a path or filter is replaced by
its pseudonym before it is looked up, as the worker replaced it at admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Annotated

import uuid

import orjson
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, AwareDatetime
from sse_starlette.sse import EventSourceResponse

from api import audiences, overview
from api.alerts import ALERTS_SPACE, AlertHub, AlertSpace, AlertStream, StreamLimit, recent_alerts
from api.auth import Admin, ApiSettings, Operator, Reader, Role, StreamReader, TokenRegistry
from api.erasures import ERASURES_SPACE, ErasureLedger, status
from api.fastpath import PortraitFastPath
from api.indexes import PORTRAITS_SPACE, PortraitSpace, aggregate
from api.limits import BodyGate, Deadline, QueryGate
from api.ingest import EventLogUnavailable, EventSink, admission_bounds, parse_batch, read_body, validate, wall_clock_ms
from api.metrics import ApiMetrics, MetricsMiddleware
from api.rescore import ModelSpace, Rescorer
from api.models import (
    AlertList,
    AudienceExport,
    AudienceFilter,
    AudienceQuery,
    AudienceResult,
    ChurnAlert,
    ErasureAccepted,
    ErasureStatus,
    Health,
    IngestResult,
    Overview,
    OverviewQuery,
    Portrait,
    Problem,
)
from api.store import LocalStore, TopicFollower
from api.strict_json import StrictJsonRoute
from online_models.clock import DAY_MS
from online_models.erasure import ErasureRequest
from online_models.events import MAX_ID_LENGTH, USER_ID_PATTERN, printable
from online_models.portrait import iso
from online_models.pseudonym import user_key
from streams import topics
from streams.kafka_security import kafka_python_options
from streams.settings import Settings, get_settings

ALERTS_TOPIC = "churn-alerts"
MODELS_TOPIC = "models"
MODELS_SPACE = b"m:"
MODEL_SUMMARY_KEY = "summary"

STATIC_DIR = FsPath(__file__).resolve().parent / "static"
# The dashboard loads nothing from elsewhere: its scripts, styles and charts are all served here.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)

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


def open_store(path: FsPath, api_settings: ApiSettings | None = None) -> LocalStore:
    """The API's store with its key spaces: portraits (indexed, churn scored with the newest models), churn alerts,
    models, erasure requests."""
    ledger = ErasureLedger(ERASURES_SPACE)
    models = ModelSpace(MODELS_SPACE)
    limits = api_settings or ApiSettings()
    hub = AlertHub(limits.api_alert_queue, per_owner=limits.api_streams_per_token, total=limits.api_streams_total)
    handlers = [
        ledger,
        models,  # opened before the portraits, which are scored with its snapshot
        PortraitSpace(PORTRAITS_SPACE, erasures=ledger, models=models),
        AlertSpace(hub, erasures=ledger, retention_ms=int(limits.api_alert_retention_days * DAY_MS)),
    ]
    return LocalStore(path, handlers, cache_mb=limits.api_cache_mb)


async def get_store(request: Request) -> LocalStore:
    """The app's store (async: a plain function dependency would cost a hop to a worker thread)."""
    return request.app.state.store


Store = Annotated[LocalStore, Depends(get_store)]


def create_app(
    settings: Settings | None = None,
    *,
    tokens: Mapping[str, Role | str] | None = None,
    api_settings: ApiSettings | None = None,
    store: LocalStore | None = None,
    follow: bool = True,
    producer=None,
) -> FastAPI:
    """Build the API.

    ``tokens`` maps bearer tokens to roles (default: ``PORTRAITS_API_TOKENS``, else one
    generated admin token printed to stderr). Without ``store`` the lifespan opens the
    store under ``data_dir/api/store``; with ``follow`` it follows the topics into it.
    ``producer`` replaces the kafka-python producer of ``POST /v1/events``.
    """
    settings = settings or get_settings()
    api_settings = api_settings or ApiSettings()
    registry = TokenRegistry.configure(tokens, api_settings)
    secret = settings.pseudonym_secret()

    def stored_id(user_id: str) -> str:
        """The id the product keeps the user under (the pseudonym when one is configured)."""
        return user_key(user_id, secret)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        local = store or open_store(settings.data_dir / "api" / "store", api_settings)
        follower = rescorer = None
        if follow:
            spaces = {
                settings.topic(topics.PORTRAITS): PORTRAITS_SPACE,
                settings.topic(ALERTS_TOPIC): ALERTS_SPACE,
                settings.topic(MODELS_TOPIC): MODELS_SPACE,
            }
            follower = TopicFollower(local, spaces, settings.bootstrap_servers, kafka_python_options(settings))
            follower.start()
            rescorer = Rescorer(local, PORTRAITS_SPACE, local.handlers[MODELS_SPACE])
            rescorer.start()
        sink = EventSink(settings, producer)
        app.state.store, app.state.follower, app.state.sink = local, follower, sink
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()
                rescorer.stop()
                follower.join(timeout=10)
                rescorer.join(timeout=10)
            sink.close()
            if store is None:
                local.close()

    app = FastAPI(
        title="Customer portraits",
        version="0.2.0",
        summary="Live customer portraits computed from the behaviour-event stream.",
        lifespan=lifespan,
    )
    app.router.route_class = StrictJsonRoute  # before any route is added
    app.state.tokens = registry
    app.state.store = store
    app.state.follower = None

    def state() -> dict[str, float | None]:
        follower: TopicFollower | None = app.state.follower
        local: LocalStore | None = app.state.store
        alerts = local.handlers.get(ALERTS_SPACE) if local is not None else None
        return {
            "portraits_api_follower_lag": follower.lag if follower else None,
            "portraits_api_follower_caught_up": float(follower.caught_up.is_set()) if follower else None,
            "portraits_api_portraits_stored": local.count(PORTRAITS_SPACE) if local is not None else None,
            "portraits_api_alerts_stored": alerts.count if alerts is not None else None,
            "portraits_api_alert_subscribers": alerts.hub.subscribers if isinstance(alerts, AlertSpace) else None,
            "portraits_api_follower_resyncs": getattr(follower, "resyncs", None),
            "portraits_api_follower_resync_removed": getattr(follower, "resync_removed", None),
        }

    metrics = ApiMetrics(state)
    app.state.metrics = metrics
    queries = QueryGate(concurrency=api_settings.api_query_concurrency, timeout_s=api_settings.api_query_timeout_seconds)
    # the stack is built at the first request, when every route exists; the last added runs first
    if api_settings.api_fast_lookups:
        app.add_middleware(PortraitFastPath, api=app, stored_id=stored_id)
    app.add_middleware(BodyGate, api=app, limit=api_settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # -- dashboard (no auth: the page holds no data; it asks for a token and calls the API) --

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The ops dashboard: overview charts, user lookup, segments and the live alert feed."""
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"},
        )

    # -- operations -------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(request: Request) -> Health:
        """Liveness, and whether the local store has caught up with the followed topics."""
        follower: TopicFollower | None = request.app.state.follower
        if follower is None:
            return Health(status="ok", topics=[], caught_up=False, lag=None, follower_error=None)
        return Health(
            status="ok",
            topics=sorted(follower.spaces),
            caught_up=follower.caught_up.is_set(),
            lag=follower.lag,
            follower_error=follower.error,
            waiting_for_topics=follower.missing_topics,
        )

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus metrics: request latency by route, follower lag, portraits and alerts stored."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- portraits --------------------------------------------------------------------------

    @app.get(
        "/v1/users/{user_id:path}/portrait",
        response_model=Portrait,
        responses={404: {"model": Problem, "description": "No portrait for this user"}, **AUTH_ERRORS},
        tags=["portraits"],
    )
    async def get_portrait(store: Store, _: Reader, user_id: UserIdPath) -> Response:
        """The user's current portrait."""
        # on the event loop: one RocksDB point read (block cache, then the page cache) takes
        # microseconds, less than handing the call to a worker thread and back; the stored
        # JSON is the answer as is (the worker wrote it in the Portrait contract)
        raw = store.get(PORTRAITS_SPACE, stored_id(user_id))
        if raw is None:
            raise HTTPException(404, f"no portrait for user {user_id!r}: no event or profile seen for this id")
        return Response(content=raw, media_type="application/json")

    @app.delete(
        "/v1/users/{user_id:path}",
        status_code=202,
        response_model=ErasureAccepted,
        responses={503: {"model": Problem, "description": "Kafka did not confirm the request; retry"}, **AUTH_ERRORS},
        tags=["portraits"],
    )
    async def erase_user(request: Request, store: Store, _: Admin, user_id: UserIdPath) -> ErasureAccepted:
        """Erase everything about the user (admin role). The request is in Kafka when this answers;
        the workers erase the user's state, portrait, profile and alerts, and the request's status
        turns ``completed`` once this API has dropped them too. Asking again is harmless."""
        sink: EventSink = request.app.state.sink
        erasure = ErasureRequest(request_id=uuid.uuid4().hex, user_id=user_id, requested_at=wall_clock_ms())

        def run() -> ErasureAccepted:
            ErasureLedger.record(store, erasure.request_id, erasure.requested_at)
            try:
                sink.write([(user_id.encode(), erasure.to_bytes())], topic=settings.topic(topics.ERASURES))
            except EventLogUnavailable as error:
                store.put_local(ERASURES_SPACE, erasure.request_id.encode(), None)
                raise HTTPException(503, f"{error}; the erasure was not requested: retry") from None
            return ErasureAccepted(
                request_id=erasure.request_id, status="pending", status_url=f"/v1/erasures/{erasure.request_id}"
            )

        return await run_in_threadpool(run)

    @app.get(
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

    # -- audiences --------------------------------------------------------------------------

    @app.post(
        "/v1/audiences/query",
        response_model=AudienceResult,
        responses={
            **BODY_ERRORS,
            400: {"model": Problem, "description": "The body is not JSON, or a cursor that does not fit the filter"},
            **QUERY_ERRORS,
        },
        tags=["audiences"],
    )
    async def query_audience(query: AudienceQuery, store: Store, _: Reader) -> AudienceResult:
        """A page of the users matching a filter, with the chosen fields; the exact size of the whole
        audience when asked (``exact_count``) or found anyway, else an estimate."""
        try:
            after = audiences.decode_cursor(query.filter, query.cursor) if query.cursor else None
        except audiences.BadCursor as error:
            raise HTTPException(400, str(error)) from None
        return await queries.run(lambda deadline: audiences.answer(store, query, after, deadline))

    @app.post(
        "/v1/audiences/export",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "user_id, then the chosen fields"},
            **BODY_ERRORS,
            **QUERY_ERRORS,
        },
        tags=["audiences"],
    )
    async def export_audience(export: AudienceExport, store: Store, _: Operator) -> StreamingResponse:
        """The whole audience as CSV (operator role). Nested values are JSON; formula-like text is quoted.
        The users are selected under the query deadline; their fields are read as the download goes."""
        selection = await queries.run(lambda deadline: audiences.select(store, export.filter, deadline))
        return StreamingResponse(  # the rows read the live store: the selection's snapshot goes with this call
            audiences.csv_rows(store, selection.users, export.fields),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="audience.csv"',
                "X-Audience-Count": str(len(selection.users)),
            },
        )

    # -- group portraits --------------------------------------------------------------------

    def _overview(store: LocalStore, flt: AudienceFilter, deadline: Deadline) -> Overview:
        selection = audiences.select(store, flt, deadline)
        totals = aggregate(selection.portrait(user) or {} for user in deadline.watch(selection.users))
        return overview.build(totals, plan=selection.plan)

    async def overview_of(store: LocalStore, flt: AudienceFilter) -> Overview:
        """Everyone's from the running aggregates at once; an audience's as a bounded query."""
        handler = store.handler(PORTRAITS_SPACE)
        if flt == AudienceFilter() and isinstance(handler, PortraitSpace):
            return overview.build(handler.aggregates())
        return await queries.run(lambda deadline: _overview(store, flt, deadline))

    @app.get("/v1/overview", response_model=Overview, responses=AUTH_ERRORS, tags=["overview"])
    async def get_overview(store: Store, _: Reader) -> Overview:
        """The group portrait of every user, from running aggregates."""
        return await overview_of(store, AudienceFilter())

    @app.post("/v1/overview", response_model=Overview, responses={**BODY_ERRORS, **QUERY_ERRORS}, tags=["overview"])
    async def post_overview(query: OverviewQuery, store: Store, _: Reader) -> Overview:
        """The group portrait of an audience."""
        return await overview_of(store, query.filter)

    # -- alerts -----------------------------------------------------------------------------

    @app.get("/v1/alerts", response_model=AlertList, responses=AUTH_ERRORS, tags=["alerts"])
    def list_alerts(
        store: Store,
        _: Reader,
        user_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        layer: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
        since: Annotated[AwareDatetime | None, Query(description="Only alerts at or after this instant (ISO-8601 with offset)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AlertList:
        """Stored churn alerts, most recent (event time) first."""
        since_ms = None if since is None else int(since.timestamp() * 1000)
        user_id = None if user_id is None else stored_id(user_id)
        found = recent_alerts(store, user_id=user_id, layer=layer, min_risk=min_risk, since_ms=since_ms, limit=limit)
        return AlertList(count=len(found), alerts=[ChurnAlert.model_validate(a) for a in found])

    @app.get(
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
        user_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        layer: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
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

    # -- models -----------------------------------------------------------------------------

    @app.get(
        "/v1/models",
        responses={200: {"content": {"application/json": {}}}, 404: {"model": Problem}, **AUTH_ERRORS},
        tags=["models"],
    )
    def get_models(store: Store, _: Reader) -> Response:
        """The summary of the fitted models, as the trainer published it, and under ``serving`` the snapshot
        version this API scores churn with and whether every stored portrait has been re-scored with it."""
        raw = store.get(MODELS_SPACE, MODEL_SUMMARY_KEY)
        if raw is None:
            raise HTTPException(404, "no model summary yet: no trainer has published one to the models topic")
        serving = store.handlers[MODELS_SPACE].status() if isinstance(store.handlers.get(MODELS_SPACE), ModelSpace) else None
        return Response(content=orjson.dumps({**orjson.loads(raw), "serving": serving}), media_type="application/json")

    # -- ingestion --------------------------------------------------------------------------

    @app.post(
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
    async def ingest_events(request: Request, _: Operator) -> IngestResult:
        """Validate a batch of events (a JSON array, or ``{"events": [...]}``) like the stream does and
        write the valid ones to the events topic; the answer comes once Kafka has them all."""
        body = await read_body(request, api_settings.api_max_body_bytes)
        sink: EventSink = request.app.state.sink

        def run() -> IngestResult:
            items = parse_batch(body, api_settings.api_max_events)
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

    return app
