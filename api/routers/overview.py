"""Group portraits: everyone's from the running aggregates, an audience's as a bounded query."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter

from api import overview
from api.associations import ASSOCIATIONS_SPACE, AssociationSpace
from api.auth import Reader
from api.dependencies import Queries, Store
from api.indexes import PORTRAITS_SPACE, PortraitSpace
from api.isolation import audience_overview, isolated
from api.limits import QueryGate
from api.models import AudienceFilter, Overview, OverviewQuery
from api.routers.common import AUTH_ERRORS, BODY_ERRORS, QUERY_ERRORS
from api.store import LocalStore
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


async def overview_of(store: LocalStore, flt: AudienceFilter, queries: QueryGate) -> Overview:
    """Everyone's from the running aggregates at once; an audience's as a bounded query. Either way with the
    shop's co-purchase pairs (baskets are not kept per user, so they are not an audience's own)."""
    handler = store.handler(PORTRAITS_SPACE)
    if flt == AudienceFilter() and isinstance(handler, PortraitSpace):
        group = overview.build(handler.aggregates())
    else:
        group = await queries.run(partial(audience_overview, store, flt), isolated=isolated(audience_overview, flt))
    associations = store.handlers.get(ASSOCIATIONS_SPACE)
    if isinstance(associations, AssociationSpace) and associations.summary is not None:
        group.co_purchase = overview.co_purchase(associations.summary)
    return group


@router.get("/v1/overview", response_model=Overview, responses=AUTH_ERRORS, tags=["overview"])
async def get_overview(store: Store, _: Reader, queries: Queries) -> Overview:
    """The group portrait of every user, from running aggregates."""
    return await overview_of(store, AudienceFilter(), queries)


@router.post("/v1/overview", response_model=Overview, responses={**BODY_ERRORS, **QUERY_ERRORS}, tags=["overview"])
async def post_overview(query: OverviewQuery, store: Store, _: Reader, queries: Queries) -> Overview:
    """The group portrait of an audience."""
    return await overview_of(store, query.filter, queries)
