"""The query side: a FastAPI service over the materialised portraits, alerts and models.

Every endpoint but ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <token>``
(:mod:`api.auth`); readers query, operators also export and ingest, admins erase users.
With ``PORTRAITS_PSEUDONYM_KEY`` set, a user id given in a path or filter is replaced by
its pseudonym before it is looked up, as the worker replaced it at admission.

The routes live in :mod:`api.routers`, one router per area; they get what they need from
the app's state through the dependencies of :mod:`api.dependencies`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path as FsPath

from fastapi import FastAPI

from api.alerts import ALERTS_SPACE, AlertHub, AlertSpace
from api.associations import ASSOCIATIONS_SPACE, AssociationSpace
from api.auth import ApiSettings, Role, TokenRegistry
from api.erasures import ERASURES_SPACE, ErasureLedger
from api.fastpath import PortraitFastPath
from api.indexes import PORTRAITS_SPACE, PortraitSpace
from api.ingest import EventSink
from api.isolation import QueryProcesses
from api.limits import BodyGate, QueryGate
from api.metrics import ApiMetrics, MetricsMiddleware
from api.rescore import MODELS_SPACE, ModelSpace, Rescorer
from api.routers import aarrr, alerts, associations, audiences, erasure, ingestion, items, models, operations, overview, portraits
from api.routers.items import ITEM_PORTRAITS_SPACE
from api.routers.operations import STATIC_DIR  # noqa: F401  (where the dashboard's files are)
from api.store import LocalStore, TopicFollower
from online_models.clock import DAY_MS
from online_models.kafka_security import kafka_python_options
from online_models.pseudonym import user_key
from online_models.settings import Settings, get_settings
from online_models.topic_names import ASSOCIATIONS, CHURN_ALERTS, ITEM_PORTRAITS, MODELS, PORTRAITS

#: The routers in the order their routes are matched.
ROUTERS = (operations, portraits, items, erasure, audiences, overview, associations, aarrr, alerts, models, ingestion)


def open_store(path: FsPath, api_settings: ApiSettings | None = None) -> LocalStore:
    """The API's store with its key spaces: portraits (indexed, churn scored with the newest models, next categories
    from the newest association summary), churn alerts, models, associations, erasure requests (and, without a
    handler of their own, item and category portraits)."""
    ledger = ErasureLedger(ERASURES_SPACE)
    model_space = ModelSpace(MODELS_SPACE)
    association_space = AssociationSpace(ASSOCIATIONS_SPACE)
    limits = api_settings or ApiSettings()
    hub = AlertHub(limits.api_alert_queue, per_owner=limits.api_streams_per_token, total=limits.api_streams_total)
    handlers = [
        ledger,
        model_space,  # opened before the portraits, which are scored with its snapshot
        association_space,  # likewise, for their next categories
        PortraitSpace(PORTRAITS_SPACE, erasures=ledger, models=model_space, associations=association_space),
        AlertSpace(hub, erasures=ledger, retention_ms=int(limits.api_alert_retention_days * DAY_MS)),
    ]
    return LocalStore(path, handlers, cache_mb=limits.api_cache_mb)


def _gauges(app: FastAPI) -> dict[str, float | None]:
    """The store's and the follower's state, read when metrics are scraped."""
    follower: TopicFollower | None = app.state.follower
    local: LocalStore | None = app.state.store
    alert_space = local.handlers.get(ALERTS_SPACE) if local is not None else None
    return {
        "portraits_api_follower_lag": follower.lag if follower else None,
        "portraits_api_follower_caught_up": float(follower.caught_up.is_set()) if follower else None,
        "portraits_api_portraits_stored": local.count(PORTRAITS_SPACE) if local is not None else None,
        "portraits_api_item_portraits_stored": local.count(ITEM_PORTRAITS_SPACE) if local is not None else None,
        "portraits_api_alerts_stored": alert_space.count if alert_space is not None else None,
        "portraits_api_alert_subscribers": alert_space.hub.subscribers if isinstance(alert_space, AlertSpace) else None,
        "portraits_api_follower_resyncs": getattr(follower, "resyncs", None),
        "portraits_api_follower_resync_removed": getattr(follower, "resync_removed", None),
    }


def _lifespan(settings: Settings, store: LocalStore | None, follow: bool, producer, query_processes: int):
    """Opens the store (unless given), starts the query processes, follows the topics into the store,
    and closes what it opened."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        local = store or open_store(settings.data_dir / "api" / "store", settings)
        processes = None
        if query_processes > 0:
            processes = QueryProcesses(local.path, query_processes)
            try:
                await processes.start()
            except BaseException:
                processes.close()
                if store is None:
                    local.close()
                raise
            app.state.queries.processes = processes
        follower, rescorers = None, []
        if follow:
            spaces = {
                settings.topic(PORTRAITS): PORTRAITS_SPACE,
                settings.topic(CHURN_ALERTS): ALERTS_SPACE,
                settings.topic(MODELS): MODELS_SPACE,
                settings.topic(ITEM_PORTRAITS): ITEM_PORTRAITS_SPACE,
                settings.topic(ASSOCIATIONS): ASSOCIATIONS_SPACE,
            }
            follower = TopicFollower(
                local, spaces, settings.bootstrap_servers, kafka_python_options(settings), on_stored=app.state.metrics.records_stored
            )
            follower.start()
            rescorers = [
                Rescorer(local, PORTRAITS_SPACE, local.handlers[MODELS_SPACE]),
                Rescorer(local, PORTRAITS_SPACE, local.handlers[ASSOCIATIONS_SPACE], name="next-categories"),
            ]
            for rescorer in rescorers:
                rescorer.start()
        sink = EventSink(settings, producer)
        app.state.store, app.state.follower, app.state.sink = local, follower, sink
        try:
            yield
        finally:
            if processes is not None:
                app.state.queries.processes = None
                processes.close()
            if follower is not None:
                follower.stop()
                for rescorer in rescorers:
                    rescorer.stop()
                follower.join(timeout=10)
                for rescorer in rescorers:
                    rescorer.join(timeout=10)
            sink.close()
            if store is None:
                local.close()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    tokens: Mapping[str, Role | str] | None = None,
    api_settings: ApiSettings | None = None,
    store: LocalStore | None = None,
    follow: bool = True,
    producer=None,
    query_processes: int | None = None,
) -> FastAPI:
    """Build the API.

    ``tokens`` maps bearer tokens to roles (default: ``PORTRAITS_API_TOKENS``, else one
    generated admin token printed to stderr). Without ``store`` the lifespan opens the
    store under ``data_dir/api/store``; with ``follow`` it follows the topics into it.
    ``producer`` replaces the kafka-python producer of ``POST /v1/events``; ``api_settings``
    the API's own settings of ``settings``. ``query_processes`` is how many processes run the
    audience queries (:mod:`api.isolation`; default ``PORTRAITS_API_QUERY_PROCESSES``, 0: threads
    of this process).
    """
    settings = settings or get_settings()
    if api_settings is not None and api_settings is not settings:
        settings = settings.model_copy(update={name: getattr(api_settings, name) for name in ApiSettings.model_fields})
    if query_processes is None:
        query_processes = settings.api_query_processes

    app = FastAPI(
        title="Customer portraits",
        version="0.2.0",
        summary="Live customer portraits computed from the behaviour-event stream.",
        lifespan=_lifespan(settings, store, follow, producer, query_processes),
    )
    app.state.settings = settings
    app.state.tokens = TokenRegistry.configure(tokens, settings)
    app.state.store, app.state.follower, app.state.sink = store, None, None
    app.state.queries = QueryGate(concurrency=settings.api_query_concurrency, timeout_s=settings.api_query_timeout_seconds)
    app.state.metrics = ApiMetrics(partial(_gauges, app))

    # the stack is built at the first request, when every route exists; the last added runs first
    if settings.api_fast_lookups:
        stored_id = partial(user_key, key=settings.pseudonym_secret())
        app.add_middleware(PortraitFastPath, api=app, stored_id=stored_id, routes=portraits.router.routes)
    app.add_middleware(BodyGate, api=app, limit=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    app.mount("/static", operations.static_files(), name="static")
    for area in ROUTERS:
        app.include_router(area.router)
    return app
