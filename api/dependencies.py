"""What the routes get from the app through ``Depends``: its settings, store, event sink, query gate, metrics
and follower, all kept on ``app.state`` by :func:`api.app.create_app`.

A test mounting one router on a bare app gives them with ``app.dependency_overrides``. The
dependencies are async: FastAPI runs a plain function dependency on a worker thread, which
costs more than reading an attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated

from fastapi import Depends, Request

from api.ingest import EventSink
from api.limits import QueryGate
from api.metrics import ApiMetrics
from api.store import LocalStore, TopicFollower
from online_models.pseudonym import user_key
from online_models.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


async def get_store(request: Request) -> LocalStore:
    """The app's store."""
    return request.app.state.store


async def get_sink(request: Request) -> EventSink:
    """Where ingested events and erasure requests are written."""
    return request.app.state.sink


async def get_queries(request: Request) -> QueryGate:
    """The bound on heavy queries (audiences, overviews)."""
    return request.app.state.queries


async def get_metrics(request: Request) -> ApiMetrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


async def get_follower(request: Request) -> TopicFollower | None:
    """The thread following the topics into the store; None when the app does not follow them."""
    return request.app.state.follower


AppSettings = Annotated[Settings, Depends(get_app_settings)]
Store = Annotated[LocalStore, Depends(get_store)]
Sink = Annotated[EventSink, Depends(get_sink)]
Queries = Annotated[QueryGate, Depends(get_queries)]
Metrics = Annotated[ApiMetrics, Depends(get_metrics)]
Follower = Annotated[TopicFollower | None, Depends(get_follower)]


async def get_stored_id(settings: AppSettings) -> Callable[[str], str]:
    """The id the product keeps a user under (the pseudonym when one is configured), as a function of the id."""
    return partial(user_key, key=settings.pseudonym_secret())


StoredId = Annotated[Callable[[str], str], Depends(get_stored_id)]
