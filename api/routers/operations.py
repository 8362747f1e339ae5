"""Operations: liveness, Prometheus metrics and the ops dashboard (no auth: the page holds no data;
it asks for a token and calls the API). Its files under ``/static`` are mounted by :func:`static_files`."""

from __future__ import annotations

from pathlib import Path as FsPath

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.dependencies import Follower, Metrics
from api.models import Health
from api.strict_json import StrictJsonRoute

STATIC_DIR = FsPath(__file__).resolve().parent.parent / "static"
# The dashboard loads nothing from elsewhere: its scripts, styles and charts are all served here.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)

router = APIRouter(route_class=StrictJsonRoute)


def static_files() -> StaticFiles:
    """The dashboard's scripts, styles and charts, to mount at ``/static`` (a router cannot carry a mount)."""
    return StaticFiles(directory=STATIC_DIR)


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The ops dashboard: overview charts, AARRR, co-purchases, user and product portraits, segments, live alerts."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/healthz", response_model=Health, tags=["ops"])
def healthz(follower: Follower) -> Health:
    """Liveness, and whether the local store has caught up with the followed topics."""
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


@router.get("/metrics", tags=["ops"], response_class=Response)
def prometheus_metrics(metrics: Metrics) -> Response:
    """Prometheus metrics: request latency by route, follower lag, portraits and alerts stored."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
