"""Declarative tags: the shipped rules, derived features, evaluation and load-time validation."""

from __future__ import annotations

import textwrap

import orjson
import pytest

from online_models.portrait import PortraitConfig
from online_models.portrait_types import portrait_from_json
from online_models.tags import (
    DERIVED_FEATURES,
    PORTRAIT_FIELDS,
    TagRules,
    TagRulesError,
    derived_features,
    known_fields,
)
from tests.unit.portrait_builder import History

NOW = 60  # as-of day; day 0 (T0) is a Wednesday
WEEKDAYS = [d for d in range(0, NOW) if d % 7 not in (3, 4)]  # day % 7 == 3, 4: Saturday, Sunday
CATEGORIES = ("snacks", "beauty", "books", "home")
REQUIRED = {
    "night_owl",
    "weekend_shopper",
    "promotion_driven",
    "cart_abandoner",
    "loyal_repeat_buyer",
    "category_lover",
    "high_refund",
    "window_shopper",
    "mobile_first",
    "big_spender",
}


def neutral(pay: bool = True, devices: tuple[str, ...] = ("ios", "pc")) -> History:
    """An unremarkable customer: daytime weekday browsing over two months, one ordinary purchase."""
    h = History()
    for i, day in enumerate(WEEKDAYS[:40]):
        h.views(day=day, hour=10 + i % 8, category=CATEGORIES[i % 4], device=devices[i % len(devices)])
    h.carts(day=50, hour=11, category="books", device=devices[0])
    if pay:
        h.pay(day=50, hour=11, amount=100.0, category="books", device=devices[-1])
    return h


def cart_abandoner() -> History:
    h = neutral()
    for day in WEEKDAYS[10:20]:
        h.carts(day=day, hour=20, category="beauty")
    return h


def win_back() -> History:
    h = History().views(day=0, n=5, device="pc")
    for day in (0, 5, 8):
        h.pay(day=day, amount=400.0, device="pc")
    return h  # last purchase 52 days before NOW: at risk


def new_buyer() -> History:
    return History().views(day=NOW - 3, n=4).pay(day=NOW - 2, amount=60.0)


MADE_FOR: dict[str, History] = {
    "night_owl": neutral().views(day=WEEKDAYS[30], hour=23, n=30).views(day=WEEKDAYS[31], hour=0, n=10),
    "weekend_shopper": neutral().views(day=52, n=30).views(day=53, n=20),
    "promotion_driven": neutral().pay(day=30, amount=50.0, promo=True).pay(day=40, amount=60.0, promo=True),
    "cart_abandoner": cart_abandoner(),
    "loyal_repeat_buyer": neutral().pay(day=20, amount=80.0).pay(day=33, amount=80.0).pay(day=40, amount=80.0),
    "category_lover": neutral().views(day=55, n=40, category="beauty"),
    "high_refund": neutral().refund(day=51, amount=100.0).refund(day=52, amount=20.0),
    "window_shopper": neutral(pay=False).views(day=45, n=20),
    "mobile_first": neutral(devices=("ios", "android", "mini_program")),
    "big_spender": neutral().pay(day=55, amount=1500.0),
    "favorite_hoarder": neutral().favorites(day=40, n=12),
    "win_back_priority": win_back(),
    "new_buyer": new_buyer(),
    "negative_reviewer": neutral().review(day=45, rating=1).review(day=52, rating=2, item_id="books-007"),
    "advocate": neutral().pay(day=30, amount=80.0).review(day=31, rating=5).review(day=40, rating=4.5).review(day=51, rating=5),
}


@pytest.fixture(scope="module")
def rules() -> TagRules:
    return TagRules.default()


def test_shipped_rules_validate(rules):
    assert len(rules.names) >= 8
    assert REQUIRED <= set(rules.names)
    assert all(d.strip() for d in rules.descriptions.values())
    assert set(MADE_FOR) == set(rules.names)  # every shipped tag has a test portrait


def test_neutral_portrait_carries_no_tag(rules):
    portrait = neutral().portrait(as_of_day=NOW)
    assert rules.evaluate(portrait) == []


@pytest.mark.parametrize("name", sorted(MADE_FOR))
def test_each_tag_fires_on_its_portrait(rules, name):
    tags = rules.evaluate(MADE_FOR[name].portrait(as_of_day=NOW))
    assert name in tags
    assert tags == sorted(tags)


def test_sentiment_tags_need_all_their_conditions(rules):
    # one negative review in the window is not enough; two are; an old one no longer counts
    assert "negative_reviewer" not in rules.evaluate(neutral().review(day=52, rating=1).portrait(as_of_day=NOW))
    assert "negative_reviewer" not in rules.evaluate(neutral().review(day=20, rating=1).review(day=52, rating=1).portrait(as_of_day=NOW))
    # ... unless the mean over 3+ reviews is low enough
    three_poor = neutral().review(day=10, rating=1).review(day=20, rating=2).review(day=55, rating=3)
    assert "negative_reviewer" in rules.evaluate(three_poor.portrait(as_of_day=NOW))
    happy = neutral().review(day=31, rating=5).review(day=40, rating=5).review(day=51, rating=5)
    assert "advocate" not in rules.evaluate(happy.portrait(as_of_day=NOW))  # bought on one day only
    assert "advocate" in rules.evaluate(happy.pay(day=30, amount=80.0).portrait(as_of_day=NOW))
    soured = happy.review(day=56, rating=1)  # a negative review in the window
    assert "advocate" not in rules.evaluate(soured.portrait(as_of_day=NOW))
    assert "advocate" in rules.evaluate(soured.portrait(as_of_day=NOW + 31))  # the window has moved on


def test_night_owl_uses_the_portrait_timezone(rules):
    # 15:00-16:00 UTC is 23:00-00:00 in Shanghai
    h = History(config=PortraitConfig(timezone="Asia/Shanghai")).views(day=10, hour=15, n=30)
    assert "night_owl" in rules.evaluate(h.portrait(as_of_day=NOW))
    assert "night_owl" not in rules.evaluate(History().views(day=10, hour=15, n=30).portrait(as_of_day=NOW))


# -- derived features ---------------------------------------------------------------


def test_derived_features_of_a_real_portrait():
    h = History()
    h.views(day=0, hour=23, n=3, category="beauty", device="ios").views(day=3, hour=12, n=5, device="pc")
    h.carts(day=3, n=4, device="android").pay(day=3, amount=90.0, promo=True, device="mini_program")
    h.carts(day=5, n=2).pay(day=8, amount=30.0).refund(day=9, amount=30.0)
    f = derived_features(h.portrait(as_of_day=10))
    assert set(f) == set(DERIVED_FEATURES)
    assert f["night_share"] == round(3 / 17, 4)
    assert f["weekend_share"] == round(10 / 17, 4)  # day 3 is a Saturday: 5 views, 4 carts, 1 payment
    assert f["promo_share"] == 0.5
    assert f["cart_abandon_rate"] == round(2 / 6, 4)  # the two carts of day 5 were not paid within a day
    assert f["repeat_purchase_days"] == 1.0 and f["repurchase_rate"] == 0.5
    assert f["refund_rate"] == 0.5
    assert f["mobile_share"] == round(12 / 17, 4)  # all but the 5 views from pc
    assert f["add_to_cart_rate"] == 0.75
    assert f["spend_90d"] == 120.0 and f["purchases_30d"] == 2.0 and f["order_value_30d"] == 60.0
    assert f["top_category"] == "snacks" and 0.5 < f["top_category_share"] < 1
    assert f["tenure_days"] == round(9 + 1 / 24, 4) and f["lifecycle_stage"] == "new"  # first seen day 0, 23:00
    assert f["value_layer"] == "ordinary"


def test_derived_features_of_an_empty_portrait():
    f = derived_features(portrait_from_json({}))
    assert f["repeat_purchase_days"] == 0.0
    assert f["value_layer"] == "low_value" and f["lifecycle_stage"] == "new"
    assert all(f[k] is None for k in f if k not in ("repeat_purchase_days", "value_layer", "lifecycle_stage"))


def test_known_portrait_paths_exist_in_render():
    portrait = orjson.loads(orjson.dumps(neutral().portrait(as_of_day=NOW)))
    proposed = {"last_return_gap_days"}  # null for a user with fewer than two purchase days
    for path in PORTRAIT_FIELDS:
        node = portrait
        for key in path.split("."):
            assert key in node, path
            node = node[key]
        assert path in proposed or node is None or isinstance(node, (int, float, str)), path


# -- evaluation semantics -------------------------------------------------------------


def one(when: dict, **kwargs) -> TagRules:
    return TagRules.from_dict({"tags": [{"name": "t", "description": "test", "when": when}]}, **kwargs)


def fires(when: dict, portrait: dict) -> bool:
    return one(when).evaluate(portrait_from_json(portrait)) == ["t"]


def test_missing_values_satisfy_only_eq_null():
    never = {"refund_rate": None}
    assert fires({"field": "refund_rate", "op": "==", "value": None}, never)
    for op, value in (("<", 0.1), (">=", 0), ("!=", 0.5), ("==", 0), ("in", [0, 1]), ("not_in", [0.5])):
        assert not fires({"field": "refund_rate", "op": op, "value": value}, never), op
    assert fires({"field": "refund_rate", "op": "!=", "value": None}, {"refund_rate": 0.0})


def test_operators():
    p = {"aov": 150.0, "profile": {"member_level": "gold", "city_tier": 1}, "devices": {"ios": 0.7}}
    assert fires({"field": "aov", "op": ">=", "value": 150}, p)
    assert not fires({"field": "aov", "op": ">", "value": 150}, p)
    assert fires({"field": "aov", "op": "<=", "value": 150}, p)
    assert fires({"field": "aov", "op": "in", "value": [100, 150]}, p)
    assert fires({"field": "profile.member_level", "op": "in", "value": ["gold", "platinum"]}, p)
    assert fires({"field": "profile.member_level", "op": "not_in", "value": ["silver"]}, p)
    assert fires({"field": "profile.city_tier", "op": "<=", "value": 2}, p)
    assert not fires({"field": "profile.member_level", "op": ">", "value": 2}, p)  # text: never ordered
    assert not fires({"field": "profile.city_tier", "op": "==", "value": True}, p)  # 1 is not True
    assert fires({"field": "devices.ios", "op": ">", "value": 0.5}, p)
    assert not fires({"field": "devices.android", "op": ">", "value": 0}, p)


def test_nesting_and_sorting():
    rules = TagRules.from_dict(
        {
            "tags": [
                {"name": "zeta", "description": "z", "when": {"field": "aov", "op": ">", "value": 0}},
                {
                    "name": "alpha",
                    "description": "a",
                    "when": {
                        "any": [
                            {"field": "aov", "op": ">", "value": 1000},
                            {"all": [{"field": "aov", "op": ">", "value": 10}, {"field": "purchase_days", "op": ">=", "value": 2}]},
                        ]
                    },
                },
            ]
        }
    )
    assert rules.evaluate(portrait_from_json({"aov": 50.0, "purchase_days": 2})) == ["alpha", "zeta"]
    assert rules.evaluate(portrait_from_json({"aov": 50.0, "purchase_days": 1})) == ["zeta"]
    assert rules.evaluate(portrait_from_json({"aov": 2000.0})) == ["alpha", "zeta"]


def test_extra_fields_can_be_declared():
    when = {"field": "funnel.visits", "op": ">=", "value": 3}
    with pytest.raises(TagRulesError):
        one(when)
    rules = one(when, extra_fields={"funnel.visits": "number"})
    assert rules.evaluate(portrait_from_json({"funnel": {"visits": 4}})) == ["t"]
    assert rules.evaluate(portrait_from_json({"funnel": {"visits": 2}})) == []
    windows = one({"field": "windows.7d.events", "op": ">", "value": 0}, extra_fields={"windows.7d.events": "number"})
    assert windows.evaluate(portrait_from_json({"windows": {"7d": {"events": 1}}})) == ["t"]
    unknown = one({"field": "funnel.visits.x", "op": "==", "value": None}, extra_fields={"funnel.visits.x": "number"})
    assert unknown.evaluate(portrait_from_json({"funnel": {"visits": 4}})) == ["t"]  # a step past a number: null


def test_load_from_a_file(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            tags:
              - name: buyer
                description: has bought
                when: {field: lifetime.purchases, op: ">=", value: 1}
            """
        )
    )
    assert TagRules.load(path).evaluate(portrait_from_json({"lifetime": {"purchases": 2}})) == ["buyer"]
    path.write_text("tags:\n  - name: buyer\n")
    with pytest.raises(TagRulesError) as error:
        TagRules.load(path)
    assert str(error.value).startswith(f"invalid tag rules in {path}:\n  tags[0].description: required key is missing")


# -- validation ----------------------------------------------------------------------


def problems(data) -> list[str]:
    with pytest.raises(TagRulesError) as error:
        TagRules.from_dict(data) if not isinstance(data, str) else TagRules.loads(data)
    return error.value.problems


def tags_with(when, index: int = 3) -> dict:
    """Rules whose tag number ``index`` has condition ``when`` (the others are fine)."""
    ok = {"field": "aov", "op": ">", "value": 1}
    return {"tags": [{"name": f"t{i}", "description": "d", "when": when if i == index else ok} for i in range(index + 1)]}


KNOWN = ", ".join(known_fields())


def test_unknown_field():
    when = {"all": [{"field": "aov", "op": ">", "value": 1}, {"field": "nite_share", "op": ">", "value": 0.3}]}
    assert problems(tags_with(when)) == [
        f"tags[3].when.all[1].field: unknown field 'nite_share'; did you mean 'night_share'? known: {KNOWN}"
    ]
    assert problems(tags_with({"field": "xyzzy", "op": ">", "value": 1}, index=0)) == [
        f"tags[0].when.field: unknown field 'xyzzy'; known: {KNOWN}"
    ]
    assert "devices.<name>, profile.<name>, active_hours.<0-23>, weekdays.<0-6>" in KNOWN


def test_unknown_op():
    assert problems(tags_with({"field": "aov", "op": "=>", "value": 1}, index=0)) == [
        "tags[0].when.op: unknown op '=>'; known: > >= < <= == != in not_in"
    ]


def test_bare_greater_than_in_yaml():
    text = "tags:\n  - name: t\n    description: d\n    when:\n      field: aov\n      op: >\n      value: 3\n"
    assert problems(text) == [
        "tags[0].when.op: unknown op ''; known: > >= < <= == != in not_in; "
        'quote the signs in YAML (op: ">"): a bare > starts a folded text block'
    ]


def test_type_mismatches():
    cases = [
        ("night_share", ">", "high", "tags[0].when.value: '>' needs a number, got string 'high'"),
        ("night_share", "<=", True, "tags[0].when.value: '<=' needs a number, got boolean True"),
        (
            "top_category",
            ">",
            3,
            "tags[0].when.op: op '>' needs a number field; 'top_category' is a string, use == != in not_in",
        ),
        (
            "night_share",
            "==",
            "high",
            "tags[0].when.value: '==' on number field 'night_share' needs a number or null, got string 'high'",
        ),
        (
            "top_category",
            "!=",
            5,
            "tags[0].when.value: '!=' on string field 'top_category' needs a string or null, got number 5",
        ),
        ("top_category", "in", "beauty", "tags[0].when.value: 'in' needs a non-empty list, got string 'beauty'"),
        ("top_category", "not_in", [], "tags[0].when.value: 'not_in' needs a non-empty list, got list []"),
        (
            "top_category",
            "in",
            ["beauty", 3],
            "tags[0].when.value: 'in' on string field 'top_category': item 1 is number 3",
        ),
    ]
    for field, op, value, message in cases:
        assert problems(tags_with({"field": field, "op": op, "value": value}, index=0)) == [message]


def test_duplicate_names():
    data = tags_with({"field": "aov", "op": ">", "value": 1}, index=2)
    data["tags"][2]["name"] = "t0"
    assert problems(data) == ["tags[2].name: duplicate tag name 't0' (first at tags[0])"]


def test_empty_conditions():
    assert problems(tags_with({"all": []})) == ["tags[3].when.all: empty condition: 'all' needs at least one condition"]
    assert problems(tags_with({"any": [{"all": []}]})) == [
        "tags[3].when.any[0].all: empty condition: 'all' needs at least one condition"
    ]
    empty = "empty condition; write all: [...], any: [...] or a comparison {field, op, value}"
    assert problems(tags_with({})) == [f"tags[3].when: {empty}"]
    assert problems(tags_with(None)) == [f"tags[3].when: {empty}"]
    data = tags_with({})
    del data["tags"][3]["when"]
    assert problems(data) == ["tags[3].when: required key is missing"]


def test_malformed_conditions():
    assert problems(tags_with({"field": "aov", "op": ">"}, index=0)) == [
        "tags[0].when: a comparison needs field, op and value; missing value"
    ]
    assert problems(tags_with({"all": [{"field": "aov", "op": ">", "value": 1}], "field": "aov"}, index=0)) == [
        "tags[0].when: a condition is one of all, any or a comparison; this one mixes all, field"
    ]
    assert problems(tags_with({"feild": "aov", "op": ">", "value": 1}, index=0)) == [
        "tags[0].when: unknown key 'feild'; a condition has all, any, or field, op and value"
    ]
    assert problems(tags_with({"all": {"field": "aov"}}, index=0)) == [
        "tags[0].when.all: 'all' needs a list of conditions, got mapping {'field': 'aov'}"
    ]
    assert problems(tags_with(["aov"], index=0)) == ["tags[0].when: a condition must be a mapping, got list ['aov']"]


def test_malformed_tags_and_files():
    bad_tag = {"name": "Night Owl", "description": " ", "when": {"field": "aov", "op": ">", "value": 1}, "colour": 1}
    assert problems({"tags": [bad_tag]}) == [
        "tags[0].name: tag name must be lower_snake_case (a-z, 0-9, _; at most 64), got 'Night Owl'",
        "tags[0].description: description must be a non-empty string",
        "tags[0].colour: unknown key",
    ]
    assert problems("") == ["<root>: the rules must be a mapping with a 'tags' list; the file is empty"]
    assert problems("- a\n- b\n") == ["<root>: the rules must be a mapping with a 'tags' list; the file is a list"]
    assert problems({"version": 2, "tags": []}) == ["version: Input should be 1"]
    assert problems({}) == ["tags: required key is missing"]
    assert problems("tags: [")[0].startswith("<root>: not valid YAML: ")


def test_every_problem_is_reported_at_once():
    data = tags_with({"field": "nite_share", "op": ">", "value": 1}, index=1)
    data["tags"][0]["when"] = {"field": "aov", "op": "~", "value": 1}
    found = problems(data)
    assert [p.split(":")[0] for p in found] == ["tags[0].when.op", "tags[1].when.field"]


def test_the_error_message_names_the_source():
    with pytest.raises(TagRulesError) as error:
        TagRules.loads("tags: [{name: a, description: b, when: {all: []}}]", source="ops/tags.yaml")
    assert str(error.value) == (
        "invalid tag rules in ops/tags.yaml:\n  tags[0].when.all: empty condition: 'all' needs at least one condition"
    )
    assert isinstance(error.value, ValueError)


def test_paths_read_lists_maps_and_windows_by_attribute():
    p = portrait_from_json({"active_hours": list(range(24)), "funnel": {"views": 3}, "windows": {"30d": {"spend": 7.5}},
                            "devices": {"ios": 0.5}, "profile": {"member_level": "gold"}})
    rules = TagRules.from_dict({"tags": [
        {"name": "late", "description": "d", "when": {"field": "active_hours.23", "op": "==", "value": 23}},
        {"name": "viewer", "description": "d", "when": {"field": "funnel.views", "op": "==", "value": 3}},
        {"name": "spender", "description": "d", "when": {"field": "windows.30d.spend", "op": ">", "value": 7}},
        {"name": "apple", "description": "d", "when": {"field": "devices.ios", "op": "==", "value": 0.5}},
        {"name": "android", "description": "d", "when": {"field": "devices.android", "op": "==", "value": None}},
        {"name": "gold", "description": "d", "when": {"field": "profile.member_level", "op": "==", "value": "gold"}},
    ]})
    assert rules.evaluate(p) == ["android", "apple", "gold", "late", "spender", "viewer"]
    for path in ("active_hours.24", "funnel.views.x", "windows.d30.spend", "windows.30d.orders"):
        with pytest.raises(TagRulesError, match="unknown field"):
            one({"field": path, "op": "==", "value": None})
