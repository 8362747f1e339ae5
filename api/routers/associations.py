"""Co-purchase pairs: support, confidence and lift over the association window, filterable by category."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator

from api.associations import ASSOCIATIONS_SPACE, AssociationSpace
from api.auth import Reader
from api.dependencies import Store
from api.models import AssociationPair, Associations, AssociationServing, AssociationWindow, Problem
from api.routers.common import AUTH_ERRORS
from api.store import LocalStore
from api.strict_json import StrictJsonRoute
from online_models.association_rules import Kind, category_of, pair_rules
from online_models.baskets import ITEM_SEPARATOR
from online_models.events import MAX_ID_LENGTH, USER_ID_PATTERN, printable

router = APIRouter(route_class=StrictJsonRoute)

CategoryName = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Only the pairs holding this category (for items: an item of it); it comes first (a)",
        json_schema_extra={"pattern": USER_ID_PATTERN},
    ),
    AfterValidator(lambda value: value if value is None else printable(value)),
]


def association_space(store: LocalStore) -> AssociationSpace:
    """The store's association key space and its summary; 404 before the first summary."""
    handler = store.handlers.get(ASSOCIATIONS_SPACE)
    if not isinstance(handler, AssociationSpace) or handler.summary is None:
        raise HTTPException(404, "no association summary yet: no aggregator has published one to the associations topic")
    return handler


def served_pair(rule: dict, kind: Kind) -> AssociationPair:
    """One pair of :func:`online_models.association_rules.pair_rules` as the API serves it (items by their id)."""
    names = {}
    for side in ("a", "b"):
        name = rule[side]
        names[side] = name if kind == "category" else name.partition(ITEM_SEPARATOR)[2]
        names[f"{side}_category"] = category_of(name, kind)
    return AssociationPair(**{**rule, **names})


@router.get(
    "/v1/associations",
    response_model=Associations,
    responses={404: {"model": Problem, "description": "No association summary yet"}, **AUTH_ERRORS},
    tags=["associations"],
)
def get_associations(
    store: Store,
    _: Reader,
    kind: Annotated[Literal["category", "item"], Query(description="Pairs of categories, or of items")] = "category",
    category: CategoryName = None,
    min_baskets: Annotated[int, Query(ge=1, le=1_000_000_000, description="Only pairs bought together in at least this many baskets")] = 1,
    sort: Annotated[
        Literal["support", "confidence", "lift"], Query(description="Order, highest first (confidence: the higher of its two ways)")
    ] = "support",
    limit: Annotated[int, Query(ge=1, le=500, description="Most pairs returned")] = 20,
) -> Associations:
    """The pairs of categories (or items) bought together in the association window: baskets holding both,
    support, confidence both ways and lift, best first. Items are counted in bounded sketches: ``max_error``
    and ``pair_max_error`` say how far their counts can be off (0 while exact)."""
    handler = association_space(store)
    summary = handler.summary
    block = summary["categories" if kind == "category" else "items"]
    rules = pair_rules(summary, kind=kind, category=category, min_baskets=min_baskets, sort=sort, limit=limit)
    return Associations(
        kind=kind,
        as_of=summary.get("as_of"),
        window=AssociationWindow(**summary["window"]),
        baskets=block["baskets"],
        max_error=block["max_error"],
        pair_max_error=block["pair_max_error"],
        category=category,
        min_baskets=min_baskets,
        sort=sort,
        pairs=[served_pair(rule, kind) for rule in rules],
        serving=AssociationServing(**handler.status()),
    )
