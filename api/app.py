"""The query side: a FastAPI service over the materialised portraits."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import Response

from api.models import Health, Portrait, Problem
from api.store import LocalStore, TopicFollower
from streams import topics
from streams.settings import Settings, get_settings

PORTRAITS_SPACE = b"p:"

USER_ID = Path(min_length=1, max_length=128, description="The user id events are keyed by")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the lifespan opens the store and starts following the portraits topic."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = LocalStore(settings.data_dir / "api" / "store")
        spaces = {settings.topic(topics.PORTRAITS): PORTRAITS_SPACE}
        follower = TopicFollower(store, spaces, settings.bootstrap_servers)
        follower.start()
        app.state.store, app.state.follower = store, follower
        try:
            yield
        finally:
            follower.stop()
            follower.join(timeout=10)
            store.close()

    app = FastAPI(
        title="Customer portraits",
        version="0.1.0",
        summary="Live customer portraits computed from the behaviour-event stream.",
        lifespan=lifespan,
    )

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz(request: Request) -> Health:
        """Liveness, and whether the local store has caught up with the portraits topic."""
        follower: TopicFollower = request.app.state.follower
        return Health(
            status="ok",
            topics=sorted(follower.spaces),
            caught_up=follower.caught_up.is_set(),
            lag=follower.lag,
            follower_error=follower.error,
        )

    @app.get(
        "/v1/users/{user_id}/portrait",
        response_model=Portrait,
        responses={404: {"model": Problem, "description": "No portrait for this user"}},
        tags=["portraits"],
    )
    def get_portrait(request: Request, user_id: str = USER_ID) -> Response:
        """The user's current portrait."""
        raw = request.app.state.store.get(PORTRAITS_SPACE, user_id)
        if raw is None:
            raise HTTPException(404, f"no portrait for user {user_id!r}: no event or profile seen for this id")
        return Response(content=raw, media_type="application/json")

    return app
