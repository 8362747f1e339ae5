"""Models: the summary of the fitted models, and the snapshot this API scores churn with."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.auth import Reader
from api.dependencies import Store
from api.models import Problem
from api.rescore import MODELS_SPACE, ModelSpace
from api.routers.common import AUTH_ERRORS
from api.strict_json import StrictJsonRoute

#: The key of the trainer's summary on the models topic.
MODEL_SUMMARY_KEY = "summary"

router = APIRouter(route_class=StrictJsonRoute)


@router.get(
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
