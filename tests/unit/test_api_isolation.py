"""Audience queries in query processes of their own (:mod:`api.isolation`): the same answers as in
process, the store's later writes seen, the bound and the deadline kept, lookups never waiting for
a query, and no process left behind."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from functools import partial

import httpx
import pytest

from api.app import create_app
from api.indexes import PORTRAITS_SPACE
from api.isolation import NICENESS, QueryProcesses, audience_answer, isolated
from api.limits import Deadline, QueryGate
from api.models import AudienceQuery
from online_models.settings import Settings
from tests.unit.test_api_synthetic import TOKENS, auth, make_client, records, synthetic_portraits

QUERIES = [
    {"filter": {}, "limit": 7, "fields": ["rfm.layer", "churn.risk"]},
    {"filter": {"layers": ["high_value", "potential"], "churn_risk": {"min": 0.3}}, "limit": 20, "fields": ["rfm.layer"]},
    {"filter": {"layers": ["high_value"]}, "exact_count": True, "limit": 5},
    {"filter": {"behaviour": [{"kind": "spend", "days": 30, "at_least": 0}]}, "limit": 3},
    {"filter": {"segments": [0, 1]}, "limit": 0},
]


@pytest.fixture
def populated(store):
    store.apply("portraits", PORTRAITS_SPACE, records(list(synthetic_portraits(300))))
    return store


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child not yet reaped by its parent is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def answers(client) -> list:
    out = []
    for body in QUERIES:
        response = client.post("/v1/audiences/query", json=body, headers=auth())
        assert response.status_code == 200, response.text
        out.append(response.json())
    for body in QUERIES[:2]:
        response = client.post("/v1/overview", json={"filter": body["filter"]}, headers=auth())
        assert response.status_code == 200, response.text
        out.append(response.json())
        response = client.post("/v1/audiences/export", json={"filter": body["filter"], "fields": ["rfm.layer"]},
                               headers=auth("operator"))
        assert response.status_code == 200, response.text
        out.append((response.headers["x-audience-count"], response.text))
    return out


def test_the_query_processes_answer_as_the_api_process_does_and_leave_with_it(populated):
    with make_client(populated, query_processes=0) as client:
        assert client.app.state.queries.processes is None
        in_process = answers(client)
    with make_client(populated, query_processes=2) as client:
        processes = client.app.state.queries.processes
        pids = processes.pids()
        assert len(pids) == 2 and os.getpid() not in pids
        assert all(os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + NICENESS for pid in pids)
        assert answers(client) == in_process
        # what the store is given later is seen by the next query
        gone = in_process[0]["users"][0]["user_id"].encode()
        populated.apply("portraits", PORTRAITS_SPACE, [(0, 10_000, gone, None)])
        first = client.post("/v1/audiences/query", json=QUERIES[0], headers=auth()).json()
        assert gone.decode() not in [m["user_id"] for m in first["users"]]
        assert first["estimated_count"] == in_process[0]["estimated_count"] - 1
    assert client.app.state.queries.processes is None
    assert not any(alive(pid) for pid in pids)


def test_a_stuck_query_process_is_ended_at_shutdown(populated):
    processes = QueryProcesses(populated.path, 1)

    async def scenario():
        await processes.start()
        stuck = asyncio.ensure_future(processes.run(isolated(_sleep, 60.0), Deadline(60)))
        await asyncio.sleep(0.2)
        return stuck

    loop = asyncio.new_event_loop()
    try:
        stuck = loop.run_until_complete(scenario())
        pids = processes.pids()
        processes.close(timeout=0.2)
        assert not any(alive(pid) for pid in pids)
        assert not os.path.exists(processes._scratch)  # the killed process's directory too
        with pytest.raises(Exception):
            loop.run_until_complete(asyncio.wait_for(stuck, 10))
    finally:
        loop.close()


def _sleep(store, seconds: float, deadline: Deadline) -> float:
    time.sleep(seconds)
    return seconds


def _hold(store, marker: str, deadline: Deadline) -> str:
    """Spin (holding this process's interpreter) until ``marker`` exists, or the deadline passes."""
    while not os.path.exists(marker):
        deadline.check()
    return "released"


def test_the_deadline_and_the_bound_hold_in_the_query_processes(populated, tmp_path):
    marker = str(tmp_path / "release")
    gate = QueryGate(concurrency=1, timeout_s=0.3)
    gate.processes = QueryProcesses(populated.path, 1)

    async def scenario():
        await gate.processes.start()
        with pytest.raises(Exception) as timed_out:  # the deadline travels to the process and stops the loop
            await gate.run(lambda d: None, isolated=isolated(_hold, marker))
        # the slot is held until the process has stopped the work, which it must do by itself
        for _ in range(200):
            if gate._slots.acquire(blocking=False):
                gate._slots.release()
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the timed-out query still held its slot 10 s after its deadline")
        gate.timeout_s = 30
        first = asyncio.ensure_future(gate.run(lambda d: None, isolated=isolated(_hold, marker)))
        await asyncio.sleep(0.1)
        with pytest.raises(Exception) as busy:
            await gate.run(lambda d: None, isolated=isolated(_hold, marker))
        open(marker, "w").close()
        return timed_out.value, busy.value, await first

    try:
        timed_out, busy, first = asyncio.run(scenario())
    finally:
        gate.processes.close()
    assert (timed_out.status_code, busy.status_code, first) == (504, 503, "released")


def _hog(store, deadline: Deadline) -> None:
    """Hold this process's interpreter in one call of C for minutes (2**32 steps of backtracking):
    on a thread of the API process, nothing else of it would run meanwhile."""
    re.fullmatch(r"(a+)+b", "a" * 32)


def test_lookups_are_answered_while_every_query_process_is_busy(populated, tmp_path):
    """Every query slot is held by a query that keeps its interpreter for minutes; lookups are still
    answered, all of them while those queries run, so none waited for one."""
    app = create_app(
        Settings(data_dir=tmp_path, kafka="127.0.0.1:1", api_query_concurrency=2, api_query_timeout_seconds=60),
        tokens=TOKENS,
        store=populated,
        follow=False,
        query_processes=2,
    )
    users = [key.decode() for key, _ in zip(populated.keys_after(PORTRAITS_SPACE), range(50))]

    async def scenario():
        async with app.router.lifespan_context(app):
            gate = app.state.queries
            held = [asyncio.ensure_future(gate.run(partial(_hog, populated), isolated=isolated(_hog))) for _ in range(2)]
            await asyncio.sleep(0.1)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                refused = await client.post("/v1/audiences/query", json={"filter": {}}, headers=auth())
                looked_up = [await client.get(f"/v1/users/{user}/portrait", headers=auth()) for user in users]
                still_held = not any(task.done() for task in held)
                gate.processes.close(timeout=0)  # ends the two queries
                ended = await asyncio.gather(*held, return_exceptions=True)
            return refused, looked_up, still_held, ended

    refused, looked_up, still_held, ended = asyncio.run(scenario())
    assert refused.status_code == 503
    assert [r.status_code for r in looked_up] == [200] * len(users) and still_held
    assert [getattr(e, "status_code", e) for e in ended] == [503, 503]


def test_the_in_process_work_and_the_isolated_work_are_the_same_function(populated):
    query = AudienceQuery.model_validate({"filter": {"layers": ["high_value"]}, "limit": 4, "fields": ["rfm.layer"]})
    processes = QueryProcesses(populated.path, 1)

    async def scenario():
        await processes.start()
        return await processes.run(isolated(audience_answer, query, None), Deadline(30))

    try:
        remote = asyncio.run(scenario())
    finally:
        processes.close()
    assert remote == audience_answer(populated, query, None, Deadline(30))


def test_a_query_process_that_dies_is_replaced(populated):
    processes = QueryProcesses(populated.path, 1)

    async def scenario():
        await processes.start()
        with pytest.raises(Exception) as died:
            await processes.run(isolated(_die), Deadline(30))
        return died.value, await processes.run(isolated(_sleep, 0.0), Deadline(30))

    try:
        died, after = asyncio.run(scenario())
    finally:
        processes.close()
    assert died.status_code == 503 and after == 0.0


def _die(store, deadline: Deadline) -> None:
    os._exit(3)


def test_threads_are_not_started_for_isolated_work():
    """With query processes the work given for a thread is not run at all."""
    gate = QueryGate(concurrency=1, timeout_s=5)
    ran = threading.Event()

    class Fake:
        async def run(self, work, deadline):
            return work(deadline)

    gate.processes = Fake()
    result = asyncio.run(gate.run(lambda d: ran.set(), isolated=lambda d: "isolated"))
    assert result == "isolated" and not ran.is_set()
