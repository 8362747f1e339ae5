"""A served score is a current score: a model snapshot that arrives after a user's last check is served, churn and CLV."""

from __future__ import annotations

import httpx
import orjson
import pytest

from online_models.gamma_gamma import GammaGamma
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationModels
from online_models.portrait_types import portrait_from_json
from streams.producer import make_producer, send_events
from tests.integration.conftest import send_models, wait_until
from tests.reference import batch_clv, events_by_user, parse_iso

DAY = 86_400_000
START = 1_788_307_200_000  # 2026-09-01: event time only, the same checks whatever the day of the run


def scored(block, portrait: dict):
    """What ``block`` (a snapshot's ``churn`` or ``clv``) gives a served portrait, as the JSON the API serves."""
    return orjson.loads(orjson.dumps(block(portrait_from_json(portrait))))


def history() -> list[dict]:
    """Twelve buyers: six buy every 2 days for 30 days and fall silent for 40, six keep buying."""
    events = []
    for u in range(12):
        for day in range(u % 3, 30 if u < 6 else 70, 2):
            events.append({"event_id": f"{u}-{day}", "user_id": f"u{u:02d}", "type": "pay",
                           "ts": START + day * DAY + u * 60_000, "amount": 20.0})
    return sorted(events, key=lambda e: e["ts"])


SPEND = {"p": 6.0, "q": 4.0}


def snapshot(version: int, **params: float) -> PopulationModels:
    models = PopulationModels()
    models.mbgnbd = MBGNBD.from_params(**params)
    models.gamma_gamma = GammaGamma.from_params(**SPEND, v=15.0 * version)  # each snapshot values orders differently
    models.version = version
    return models


@pytest.mark.timeout(600)
def test_a_snapshot_after_the_last_check_is_what_the_api_serves(stack):
    stack.env["PORTRAITS_TRAIN_MODELS"] = "false"  # frozen: only the snapshots this test sends score
    settings = stack.settings()
    # an edge fit from before anyone could drop out (everyone alive), then a sound one
    old, new = snapshot(5, r=4.0, alpha=14.0, a=3.6e-6, b=1.7e4), snapshot(9, r=3.0, alpha=11.0, a=0.1, b=5.3)
    events = history()
    producer = make_producer(settings)
    send_models(producer, settings, old)
    producer.flush()
    stack.start_product()
    send_events(producer, settings, events)
    producer.flush()
    users = sorted({e["user_id"] for e in events})
    client = httpx.Client(base_url=stack.api, headers=stack.auth_headers("test-reader"), timeout=10)

    def served() -> dict[str, dict]:
        out = {}
        for user in users:
            answer = client.get(f"/v1/users/{user}/portrait")
            if answer.status_code == 200:
                out[user] = answer.json()
        return out

    def all_folded() -> bool:
        portraits = served()
        return len(portraits) == len(users) and all(p["lifetime"]["purchases"] == sum(
            e["user_id"] == u for e in events) for u, p in portraits.items())

    wait_until(all_folded, timeout=240, interval=1, what="every purchase to be served")
    by_user = events_by_user(events)
    before = served()
    # scored at their last check with the old snapshot: the silent read as alive (a portrait's as_of is its
    # partition's stream time, so only silent users sharing a partition with a busy one look silent)
    silent = [u for u, p in before.items() if p["days_since_last_purchase"] > 30]
    assert silent, [p["as_of"] for p in before.values()]
    assert all(before[u]["churn"]["model_version"] == 5 and before[u]["churn"]["p_alive"] == 1.0 for u in silent)
    assert all(p["clv"] == scored(old.clv, p) for p in before.values())

    send_models(producer, settings, new)
    producer.flush()
    wait_until(lambda: client.get("/v1/models").json()["serving"]["rescored_version"] == 9, timeout=120, interval=0.5,
               what="the API to re-score with the new snapshot")
    after = served()
    for user, portrait in after.items():
        assert portrait["as_of"] == before[user]["as_of"], "the worker checked the user again: the test proves nothing"
        expected = scored(new.churn, portrait)  # the newest snapshot at the portrait's as_of, computed here
        assert portrait["churn"] == expected, user
        assert portrait["clv"] == scored(new.clv, portrait) != before[user]["clv"], user
        batch = batch_clv(  # and from the raw events, independently
            by_user[user], parse_iso(portrait["as_of"]), purchase=new.mbgnbd.params_, mbg=True,
            spend={**SPEND, "v": 135.0}, horizon_days=365, annual_rate=0.10,
        )
        for name in ("expected_purchases", "expected_order_value", "value"):
            assert portrait["clv"][name] == pytest.approx(batch[name], rel=1e-4, abs=6e-3), (user, name)
    assert all(after[u]["churn"]["p_alive"] < 0.05 and after[u]["churn"]["model_version"] == 9 for u in silent)
    models = client.get("/v1/models").json()
    assert models["version"] == 9 and models["serving"] == {
        "model_version": 9, "rescored_version": 9, "rescore_pending": False, "portraits_rescored": models["serving"]["portraits_rescored"]}
    # audiences by risk and the overview follow the new scores
    risky = client.post("/v1/audiences/query", json={"filter": {"churn_risk": {"min": 0.9}}, "exact_count": True}).json()
    assert sorted(m["user_id"] for m in risky["users"]) == sorted(u for u, p in after.items() if p["churn"]["risk"] >= 0.9)
    assert set(silent) <= {m["user_id"] for m in risky["users"]}
    overview = client.get("/v1/overview").json()
    assert overview["churn"]["users_scored"] == 12 and sum(overview["churn"]["histogram"][9:]) == len(risky["users"])
    # and so do audiences by CLV and the overview's CLV figures
    values = {u: p["clv"]["value"] for u, p in after.items()}
    top = client.post("/v1/audiences/query", json={"filter": {"clv": {"top_share": 0.25}}, "exact_count": True}).json()
    assert sorted(m["user_id"] for m in top["users"]) == sorted(u for u, v in values.items() if v >= sorted(values.values())[-3])
    assert overview["clv"]["users_valued"] == 12 and overview["clv"]["total"] == pytest.approx(sum(values.values()), abs=0.01)
    assert models["clv"]["gamma_gamma"]["v"] == 135.0 and models["clv"]["purchase_model"] == "mbgnbd"
    producer.close()
    client.close()
