"""Item and category portraits: one item's or one category's current portrait (:mod:`online_models.item_portrait`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from api.auth import Reader
from api.dependencies import Store
from api.models import Problem
from api.routers.common import AUTH_ERRORS, CATEGORY_SEGMENT, ITEM_ID_SEGMENT, CategoryPath, ItemIdPath
from api.strict_json import StrictJsonRoute
from online_models.item_facts import category_key, item_key
from online_models.portrait_schema import ItemPortrait

#: The store's key space of the item-portraits topic (keys item:<id> and category:<name>, as on the topic).
ITEM_PORTRAITS_SPACE = b"t:"

router = APIRouter(route_class=StrictJsonRoute)


def _stored(store, key: str, missing: str) -> Response:
    # the stored JSON is the answer as is (the worker wrote it in the ItemPortrait contract)
    raw = store.get(ITEM_PORTRAITS_SPACE, key)
    if raw is None:
        raise HTTPException(404, missing)
    return Response(content=raw, media_type="application/json")


@router.get(
    "/v1/items/" + ITEM_ID_SEGMENT + "/portrait",
    response_model=ItemPortrait,
    responses={404: {"model": Problem, "description": "No portrait for this item"}, **AUTH_ERRORS},
    tags=["items"],
)
async def get_item_portrait(store: Store, _: Reader, item_id: ItemIdPath) -> Response:
    """The item's current portrait: rolling views, carts, favourites, purchases, GMV, conversion, refund and
    repurchase rates, and who buys it."""
    return _stored(
        store, item_key(item_id), f"no portrait for item {item_id!r}: no view, cart, favourite, purchase or refund of it seen"
    )


@router.get(
    "/v1/categories/" + CATEGORY_SEGMENT + "/portrait",
    response_model=ItemPortrait,
    responses={404: {"model": Problem, "description": "No portrait for this category"}, **AUTH_ERRORS},
    tags=["items"],
)
async def get_category_portrait(store: Store, _: Reader, category: CategoryPath) -> Response:
    """The category's current portrait: the same figures over every event that named the category."""
    return _stored(
        store,
        category_key(category),
        f"no portrait for category {category!r}: no view, cart, favourite, purchase or refund in it seen",
    )
