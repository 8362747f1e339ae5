"""Group portraits: everyone's from the running aggregates, an audience's as a bounded query."""

from __future__ import annotations

from fastapi import APIRouter

from api import audiences, overview
from api.auth import Reader
from api.dependencies import Queries, Store
from api.indexes import PORTRAITS_SPACE, PortraitSpace, aggregate
from api.limits import Deadline, QueryGate
from api.models import AudienceFilter, Overview, OverviewQuery
from api.routers.common import AUTH_ERRORS, BODY_ERRORS, QUERY_ERRORS
from api.store import LocalStore
from api.strict_json import StrictJsonRoute

router = APIRouter(route_class=StrictJsonRoute)


def _overview(store: LocalStore, flt: AudienceFilter, deadline: Deadline) -> Overview:
    selection = audiences.select(store, flt, deadline)
    totals = aggregate(selection.portrait(user) or {} for user in deadline.watch(selection.users))
    return overview.build(totals, plan=selection.plan)


async def overview_of(store: LocalStore, flt: AudienceFilter, queries: QueryGate) -> Overview:
    """Everyone's from the running aggregates at once; an audience's as a bounded query."""
    handler = store.handler(PORTRAITS_SPACE)
    if flt == AudienceFilter() and isinstance(handler, PortraitSpace):
        return overview.build(handler.aggregates())
    return await queries.run(lambda deadline: _overview(store, flt, deadline))


@router.get("/v1/overview", response_model=Overview, responses=AUTH_ERRORS, tags=["overview"])
async def get_overview(store: Store, _: Reader, queries: Queries) -> Overview:
    """The group portrait of every user, from running aggregates."""
    return await overview_of(store, AudienceFilter(), queries)


@router.post("/v1/overview", response_model=Overview, responses={**BODY_ERRORS, **QUERY_ERRORS}, tags=["overview"])
async def post_overview(query: OverviewQuery, store: Store, _: Reader, queries: Queries) -> Overview:
    """The group portrait of an audience."""
    return await overview_of(store, query.filter, queries)
