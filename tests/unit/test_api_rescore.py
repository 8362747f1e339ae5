"""A served score is a current score: the API re-scores stored portraits with the newest model snapshot."""

from __future__ import annotations

import orjson
import pytest

from api.rescore import Rescorer, rescore_stored
from online_models.gamma_gamma import GammaGamma
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.replay import replay_history
from tests.unit.test_api_synthetic import auth, make_client, make_store, records
from tests.unit.portrait_builder import as_json

DAY = 86_400_000
START = 1_788_307_200_000  # 2026-09-01


def history() -> list[dict]:
    """Twelve buyers: the first six buy every 2 days for 30 days then fall silent for 40, the others keep buying."""
    events = []
    for u in range(12):
        last_day = 30 if u < 6 else 70
        for day in range(u % 3, last_day, 2):
            events.append({"event_id": f"{u}-{day}", "user_id": f"u{u:02d}", "type": "pay", "ts": START + day * DAY + u * 60_000,
                           "amount": 20.0})
    events.sort(key=lambda e: e["ts"])
    return events


def snapshot(version: int, **params: float) -> PopulationModels:
    models = PopulationModels()
    models.mbgnbd = MBGNBD.from_params(**params)
    models.gamma_gamma = GammaGamma.from_params(p=6.0, q=4.0, v=15.0 * version)  # each snapshot values orders differently
    models.version = version
    return models


# before dropout showed (an edge fit: everyone alive) and after
OLD = dict(r=4.0, alpha=14.0, a=3.6e-6, b=1.7e4)
NEW = dict(r=3.0, alpha=11.0, a=0.1, b=5.3)


def mbg_p_alive(params: dict, x: float, t_x: float, T: float) -> float:
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    return 1.0 / (1.0 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))


@pytest.fixture
def served(tmp_path):
    """Portraits scored by the old snapshot in the store; then the new snapshot arrives and is applied."""
    result = replay_history(history())
    old, new = snapshot(5, **OLD), snapshot(9, **NEW)
    base = {u: render(s, as_of=result.as_of, config=PortraitConfig()) for u, s in sorted(result.states.items())}
    stored = [as_json(old.enrich(p)) for p in base.values()]
    store = make_store(tmp_path / "store", stored)
    summary = orjson.dumps(new.summary())
    store.apply("models", b"m:", [(0, 0, b"snapshot", new.to_bytes()), (0, 1, b"summary", summary)])
    return store, base, old, new


def test_a_new_snapshot_rescores_stored_portraits_and_their_indexes(served):
    store, base, old, new = served
    silent = base["u00"]
    assert old.churn(silent).p_alive == 1.0  # what the stale score says of a user 40 days silent
    with make_client(store) as client:
        models = client.get("/v1/models", headers=auth()).json()
        assert models["serving"] == {"model_version": 9, "rescored_version": None, "rescore_pending": True, "portraits_rescored": 0}
        assert models["clv"] == new.summary()["clv"] and models["clv"]["gamma_gamma"]["v"] == 135.0
        assert models["clv"]["horizon_days"] == 365 and models["clv"]["annual_discount_rate"] == 0.1
        rewritten = rescore_stored(store, b"p:", store.handlers[b"m:"])
        assert rewritten == 12
        for user, portrait in base.items():
            served_churn = client.get(f"/v1/users/{user}/portrait", headers=auth()).json()["churn"]
            assert served_churn == as_json(new.churn(portrait)) and served_churn["model_version"] == 9
            assert client.get(f"/v1/users/{user}/portrait", headers=auth()).json()["clv"] == as_json(new.clv(portrait))
        # the worked numbers, independently: u00 bought on 15 days (0..28), silent since day 28 at as_of
        as_of_days = (store_as_of(base["u00"]) - START) / DAY
        expected = mbg_p_alive(NEW, 14, 28.0, as_of_days)
        served_u00 = client.get("/v1/users/u00/portrait", headers=auth()).json()["churn"]
        assert served_u00["p_alive"] == pytest.approx(expected, abs=1e-4) and served_u00["p_alive"] < 0.05
        # audiences by risk and the overview read the risk index and aggregates: they follow
        risky = client.post("/v1/audiences/query", headers=auth(),
                            json={"filter": {"churn_risk": {"min": 0.5}}, "exact_count": True}).json()
        expected_risky = sorted(u for u, p in base.items() if new.churn(p).risk >= 0.5)
        assert sorted(m["user_id"] for m in risky["users"]) == expected_risky and len(expected_risky) == 6
        overview = client.get("/v1/overview", headers=auth()).json()["churn"]
        risks = [new.churn(p).risk for p in base.values()]
        assert overview["mean_risk"] == pytest.approx(sum(risks) / len(risks), abs=1e-4)
        assert sum(overview["histogram"][5:]) == 6
        # and so do audiences by CLV and the overview's CLV figures
        values = {u: new.clv(p).value for u, p in base.items()}
        top = client.post("/v1/audiences/query", headers=auth(), json={"filter": {"clv": {"top_share": 0.25}}, "exact_count": True}).json()
        assert sorted(m["user_id"] for m in top["users"]) == sorted(sorted(values, key=values.get)[-3:])
        clv = client.get("/v1/overview", headers=auth()).json()["clv"]
        assert clv["users_valued"] == 12 and clv["total"] == pytest.approx(sum(values.values()), abs=0.01)
    # a second pass with the same snapshot changes nothing
    assert rescore_stored(store, b"p:", store.handlers[b"m:"]) == 0


def store_as_of(portrait) -> int:
    from tests.reference import parse_iso

    return parse_iso(portrait.as_of)


def test_a_portrait_scored_by_an_older_snapshot_is_scored_again_on_arrival(served):
    store, base, old, new = served
    late = as_json(old.enrich(base["u01"]))
    store.apply("portraits", b"p:", records([late], start_offset=100))
    stored = store.get_json(b"p:", "u01")
    assert stored["churn"] == as_json(new.churn(base["u01"])) and stored["churn"]["model_version"] == 9
    assert stored["clv"] == as_json(new.clv(base["u01"])) != late["clv"]
    rescored = ("churn", "clv")
    assert {k: v for k, v in stored.items() if k not in rescored} == {k: v for k, v in late.items() if k not in rescored}


def test_a_portrait_scored_by_a_newer_snapshot_is_kept(served):
    store, base, _, _ = served
    newer = as_json(snapshot(12, **OLD).enrich(base["u02"]))
    store.apply("portraits", b"p:", records([newer], start_offset=100))
    assert store.get_json(b"p:", "u02")["churn"] == newer["churn"]
    rescore_stored(store, b"p:", store.handlers[b"m:"])
    assert store.get_json(b"p:", "u02")["churn"]["model_version"] == 12


def test_a_reopened_store_scores_with_the_stored_snapshot(served, tmp_path):
    store, base, _, new = served
    store.close()
    from api.app import open_store

    reopened = open_store(tmp_path / "store")
    models = reopened.handlers[b"m:"]
    assert models.models.version == 9 and models.snapshot_arrived.is_set()
    assert rescore_stored(reopened, b"p:", models) == 12
    assert reopened.get_json(b"p:", "u03")["churn"] == as_json(new.churn(base["u03"]))
    reopened.close()


def test_the_api_keeps_no_user_of_the_trainers_purchase_sample(served, tmp_path):
    store, base, old, new = served
    full = snapshot(11, **NEW)
    full.purchase_sample = {"secret-user-7": (3, 10.0, 40.0, None), "secret-user-8": (1, 0.0, 12.0, 5)}
    store.apply("models", b"m:", [(0, 2, b"snapshot", full.to_bytes())])
    kept = store.get(b"m:", b"snapshot")
    assert b"secret-user-7" not in kept and b"secret-user-8" not in kept and len(kept) < len(full.to_bytes())
    models = store.handlers[b"m:"].models
    assert models.version == 11 and models.purchase_sample == {}
    for portrait in base.values():  # it scores exactly as the whole snapshot
        assert models.churn(portrait) == full.churn(portrait)
    store.db[b"m:snapshot"] = full.to_bytes()  # as a store written before slimming holds it
    store.close()
    reopened = make_store(tmp_path / "store")
    try:
        assert reopened.handlers[b"m:"].models.version == 11 and reopened.handlers[b"m:"].models.purchase_sample == {}
        assert b"secret-user-7" not in reopened.get(b"m:", b"snapshot")
    finally:
        reopened.close()


def test_a_portrait_the_follower_writes_during_a_pass_is_kept(served, monkeypatch):
    """The pass scores a batch before taking the write lock; a portrait the follower writes in between is
    kept as written (scored on arrival), not replaced by the value the pass computed from the older one."""
    store, base, old, new = served
    result = replay_history(history())
    later = render(result.states["u03"], as_of=result.as_of + DAY, config=PortraitConfig())
    rewrite = store.rewrite
    written = []

    def follower_writes_first(space, computed, change):
        if not written and b"u03" in computed:
            store.apply("portraits", b"p:", records([as_json(old.enrich(later))], start_offset=100))
            written.append(True)
        return rewrite(space, computed, change)

    monkeypatch.setattr(store, "rewrite", follower_writes_first)
    assert rescore_stored(store, b"p:", store.handlers[b"m:"], batch=5) == 11  # u03 was rescored on arrival
    stored = store.get_json(b"p:", "u03")
    assert written and stored["as_of"] == later.as_of != base["u03"].as_of
    assert stored["churn"] == as_json(new.churn(later)) and stored["clv"] == as_json(new.clv(later))
    for user, portrait in base.items():
        if user != "u03":
            assert store.get_json(b"p:", user)["churn"] == as_json(new.churn(portrait))


def test_a_pass_rests_after_each_batch_in_proportion_to_its_work(served):
    store, base, _, new = served
    rests: list[float] = []
    assert rescore_stored(store, b"p:", store.handlers[b"m:"], batch=5, rest=rests.append) == 12
    assert len(rests) == 3 and all(r >= 0 for r in rests)  # 12 portraits in batches of 5
    rescorer = Rescorer(store, b"p:", store.handlers[b"m:"], share=0.25)
    waits: list[float] = []
    rescorer._stopping.wait = waits.append  # what the thread would rest: three times the work
    rescorer._rest(0.02)
    assert waits == [pytest.approx(0.06)]
    with pytest.raises(ValueError, match="share"):
        Rescorer(store, b"p:", store.handlers[b"m:"], share=0)
