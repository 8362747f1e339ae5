"""The typed portrait the core builds mirrors the schema's models field for field, and reads back from JSON."""

from __future__ import annotations

import dataclasses
import gzip
import types
import typing
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

from online_models import portrait_schema as schema
from online_models import portrait_types as typed
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import WINDOW_DAYS, PortraitConfig, render
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator

FIXTURE = Path(__file__).parent / "fixtures" / "portraits-wire.jsonl.gz"

#: each dataclass and the pydantic model it mirrors
MIRRORS = {
    typed.WindowTotals: schema.WindowTotals,
    typed.Lifetime: schema.Lifetime,
    typed.CategoryScore: schema.CategoryScore,
    typed.Funnel: schema.Funnel,
    typed.WeeklyLedger: schema.WeeklyLedger,
    typed.NegativeReview: schema.NegativeReview,
    typed.ReviewSentiment: schema.ReviewSentiment,
    typed.RenderedPortrait: schema.RenderedPortrait,
    typed.Rfm: schema.Rfm,
    typed.Segment: schema.Segment,
    typed.Churn: schema.Churn,
    typed.Clv: schema.Clv,
    typed.PriceBand: schema.PriceBand,
    typed.Portrait: schema.Portrait,
}
#: fields of the schema the worker never publishes (the API adds them)
API_ONLY = {schema.Portrait: ("next_categories",)}


def wire_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items() if name not in API_ONLY.get(model, ())]


def models_in(annotation) -> set[type]:
    """The pydantic models an annotation names (through ``X | None`` and ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        return set().union(*map(models_in, typing.get_args(annotation)))
    return set()


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda cls: cls.__name__)
def test_each_dataclass_has_its_models_fields_in_order(cls):
    assert dataclasses.is_dataclass(cls) and "__slots__" in vars(cls)
    assert [f.name for f in dataclasses.fields(cls)] == wire_names(MIRRORS[cls])


def test_windows_keep_the_wire_keys_and_every_model_nested_in_the_portrait_has_a_mirror():
    assert [key for _, key in typed.Windows.KEYS] == wire_names(schema.Windows)
    assert [attribute for attribute, _ in typed.Windows.KEYS] == list(schema.Windows.model_fields)
    assert [key for _, key in typed.Windows.KEYS] == [f"{days}d" for days in WINDOW_DAYS]  # what render counts
    nested = set()
    for model in (schema.Portrait, *MIRRORS.values()):
        for name, info in model.model_fields.items():
            if name not in API_ONLY.get(model, ()):
                nested |= models_in(info.annotation)
    # Windows is a mapping (keys no Python name can be), the sparse profile a plain dict
    assert nested - set(MIRRORS.values()) == {schema.Windows, schema.ProfileAttributes}
    hints = typing.get_type_hints(typed.RenderedPortrait)
    assert hints["windows"] is typed.Windows and typing.get_origin(hints["profile"]) is dict


def test_blocks_cannot_grow_attributes():
    block = typed.PriceBand("mid", 0.5)
    with pytest.raises(AttributeError):
        block.rank_pct = 50  # type: ignore[attr-defined]
    assert orjson.dumps(block) == b'{"band":"mid","rank":0.5}'


def test_published_portraits_read_back_from_json_serialise_to_the_same_bytes():
    lines = gzip.decompress(FIXTURE.read_bytes()).splitlines()
    kinds = set()
    for line in lines:
        portrait = typed.portrait_from_json(orjson.loads(line))
        kinds.add(type(portrait))
        assert orjson.dumps(portrait) == line
        assert isinstance(portrait.windows.d30, typed.WindowTotals) and isinstance(portrait.funnel, typed.Funnel)
    assert kinds == {typed.RenderedPortrait, typed.Portrait}


def test_reading_json_tolerates_missing_and_odd_parts():
    portrait = typed.portrait_from_json({"user_id": "u1", "windows": {"7d": None}, "top_categories": "x", "rfm": {}})
    assert isinstance(portrait, typed.Portrait)
    assert portrait.windows.d7.events is None and portrait.windows.d90.spend is None
    assert portrait.top_categories == [] and portrait.devices == {} and portrait.lifetime.purchases is None
    assert portrait.segment is None and portrait.rfm.layer is None


def test_the_trainer_learns_the_same_from_a_samples_json_as_from_the_typed_portrait():
    result = replay_history(ShopSimulator(n_users=30, start_ms=1_767_225_600_000, seed=2).history(30))
    config = PopulationConfig(segment_warmup=20, n_segments=3, churn_min_buyers=5, churn_refit_every=10)
    in_process, from_topic = PopulationModels(config), PopulationModels(config)
    for _, state in sorted(result.states.items()):
        for as_of in (result.as_of - 20 * 86_400_000, result.as_of):
            sample = {"kind": "user", "ts": as_of, "portrait": render(state, as_of=as_of, config=PortraitConfig())}
            in_process.learn(sample)  # a replay's trainer: the typed portrait
            from_topic.learn(orjson.loads(orjson.dumps(sample)))  # the trainer's: the sample's JSON
    assert in_process.mbgnbd is not None and in_process.segments.seeded
    assert orjson.dumps(in_process.summary()) == orjson.dumps(from_topic.summary())
    assert in_process.purchase_sample == from_topic.purchase_sample
    probe = render(result.states[min(result.states)], as_of=result.as_of, config=PortraitConfig())
    assert orjson.dumps(in_process.enrich(probe)) == orjson.dumps(from_topic.enrich(probe))
