"""Declarative tags: rules ops edit in YAML, checked at load, evaluated on a portrait.

A rules file holds a list of tags; each has a ``name``, a ``description`` and a
condition ``when``. A condition is a comparison ``{field, op, value}``, or
``all:`` / ``any:`` with a list of conditions (nested as deep as needed):

.. code-block:: yaml

    tags:
      - name: night_owl
        description: Most activity between 23:00 and 03:00.
        when:
          all:
            - {field: night_share, op: ">=", value: 0.3}
            - {field: lifetime.events, op: ">=", value: 20}

``field`` is a derived feature (:data:`DERIVED_FEATURES`, e.g. ``night_share``) or
a dotted path into the portrait (``windows.30d.spend``, ``funnel.views``,
``devices.ios``, ``profile.member_level``, ``active_hours.23``). ``op`` is one of
``> >= < <= == != in not_in``; quote the comparison signs in YAML (``">="``),
where a bare ``>`` starts a folded text block. Ordering ops need a number field
and a number value; ``==``/``!=`` take a value of the field's type or ``null``;
``in``/``not_in`` take a non-empty list.

A value the portrait does not have (null: a never-buyer's ``refund_rate``, say)
satisfies only ``== null``: every other comparison on it is false, so a tag never
fires on data the user does not have.

Every mistake is reported at load with its place in the file:

>>> from online_models.tags import TagRules, TagRulesError
>>> bad = {"tags": [{"name": "owl", "description": "night", "when": {"all": [
...     {"field": "lifetime.events", "op": ">=", "value": 20},
...     {"field": "nite_share", "op": ">", "value": 0.3}]}}]}
>>> try:
...     TagRules.from_dict(bad)
... except TagRulesError as error:
...     print(error.problems[0].split(" known:")[0])
tags[0].when.all[1].field: unknown field 'nite_share'; did you mean 'night_share'?

Evaluating:

>>> rules = TagRules.from_dict({"tags": [
...     {"name": "big_spender", "description": "spends a lot", "when": {"field": "spend_90d", "op": ">=", "value": 1000}},
...     {"name": "window_shopper", "description": "browses, never buys", "when": {"all": [
...         {"field": "lifetime.purchases", "op": "==", "value": 0},
...         {"field": "funnel.views", "op": ">=", "value": 30}]}}]})
>>> from online_models.portrait_types import portrait_from_json
>>> rules.evaluate(portrait_from_json({"lifetime": {"purchases": 0}, "funnel": {"views": 45}, "windows": {"90d": {"spend": 0.0}}}))
['window_shopper']
>>> len(TagRules.default().names) >= 8
True
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from importlib import resources
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from online_models.lifecycle import LifecycleConfig, lifecycle_stage, tenure_days
from online_models.portrait_types import RenderedPortrait, Windows
from online_models.rfm import LayerConfig, add_to_cart_rate, order_value_30d, repurchase_rate, value_layer
from online_models.vocabulary import NIGHT_HOURS, WEEKEND_DAYS, is_mobile, ratio, share_of

__all__ = [
    "DERIVED_FEATURES",
    "OPS",
    "Condition",
    "TagRules",
    "TagRulesError",
    "TagSpec",
    "derived_features",
    "known_fields",
]

Kind = Literal["number", "string", "bool", "any"]

#: The comparison operators.
OPS = (">", ">=", "<", "<=", "==", "!=", "in", "not_in")
_ORDERING = frozenset({">", ">=", "<", "<="})
#: Hours (in the portrait's timezone) that count as night.
_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CONDITION_KEYS = ("all", "any", "field", "op", "value")


# -- derived features -------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _night_share(p: RenderedPortrait) -> float | None:
    hours = p.active_hours
    if not isinstance(hours, list) or len(hours) != 24:
        return None
    return _round(share_of(hours, NIGHT_HOURS))


def _weekend_share(p: RenderedPortrait) -> float | None:
    if p.weekend_share is not None:
        return p.weekend_share
    days = p.weekdays
    if not isinstance(days, list) or len(days) != 7:
        return None
    return _round(share_of(days, WEEKEND_DAYS))


def _top_category_share(p: RenderedPortrait) -> float | None:
    scores = [c.score or 0.0 for c in p.top_categories]
    return ratio(scores[0], sum(scores)) if scores else None


def _top_category(p: RenderedPortrait) -> str | None:
    top = p.top_categories
    return top[0].category if top else None


def _mobile_share(p: RenderedPortrait) -> float | None:
    devices = p.devices
    if not devices:
        return None
    return round(sum(share for name, share in devices.items() if is_mobile(name)), 4)


def _repeat_purchase_days(p: RenderedPortrait) -> float:
    return max(0.0, float(p.purchase_days or 0) - 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_Feature = tuple[Kind, str, Callable[[RenderedPortrait, LayerConfig, LifecycleConfig], Any]]

#: Derived features: name -> (kind, description, function of portrait and configs).
DERIVED_FEATURES: dict[str, _Feature] = {
    "night_share": ("number", "share of activity at night, 23:00-01:59 (portrait timezone)", lambda p, *_: _night_share(p)),
    "weekend_share": ("number", "share of activity on Saturday and Sunday", lambda p, *_: _weekend_share(p)),
    "promo_share": ("number", "share of purchases made on promotion", lambda p, *_: p.promo_share),
    "cart_abandon_rate": (
        "number",
        "abandoned carts / add-to-cart events (capped at 1)",
        lambda p, *_: ratio(p.funnel.abandoned_carts, p.funnel.add_to_cart, cap=1.0),
    ),
    "repeat_purchase_days": ("number", "distinct purchase days beyond the first", lambda p, *_: _repeat_purchase_days(p)),
    "repurchase_rate": ("number", "(purchase_days - 1) / purchase_days", lambda p, *_: _round(repurchase_rate(p))),
    "top_category": ("string", "the category with the highest decayed interest", lambda p, *_: _top_category(p)),
    "top_category_share": (
        "number",
        "top category's score / sum of the listed top categories' scores",
        lambda p, *_: _top_category_share(p),
    ),
    "refund_rate": ("number", "refunds / purchases", lambda p, *_: p.refund_rate),
    "mobile_share": ("number", "share of events from ios, android or mini_program", lambda p, *_: _mobile_share(p)),
    "add_to_cart_rate": ("number", "add-to-cart events / views (lifetime)", lambda p, *_: _round(add_to_cart_rate(p))),
    "favorite_rate": (
        "number",
        "favourites / views (lifetime)",
        lambda p, *_: ratio(p.funnel.favorites, p.funnel.views),
    ),
    "spend_30d": ("number", "spend in the last 30 days", lambda p, *_: p.windows.d30.spend),
    "spend_90d": ("number", "spend in the last 90 days", lambda p, *_: p.windows.d90.spend),
    "purchases_30d": ("number", "purchases in the last 30 days", lambda p, *_: p.windows.d30.purchases),
    "purchases_90d": ("number", "purchases in the last 90 days", lambda p, *_: p.windows.d90.purchases),
    "events_30d": ("number", "events in the last 30 days", lambda p, *_: p.windows.d30.events),
    "order_value_30d": ("number", "spend / purchases over 30 days", lambda p, *_: _round(order_value_30d(p))),
    "tenure_days": ("number", "days from first_seen to as_of", lambda p, *_: _round(tenure_days(p))),
    "value_layer": ("string", "high_value, potential, ordinary or low_value", lambda p, lc, _: value_layer(p, lc)),
    "lifecycle_stage": (
        "string",
        "new, active, at_risk, churned or returning",
        lambda p, _, cc: lifecycle_stage(p, cc),
    ),
}

#: Paths into the portrait (``render`` output) and their kinds.
PORTRAIT_FIELDS: dict[str, Kind] = {
    **{f"lifetime.{k}": "number" for k in ("events", "purchases", "spend", "refunds", "refund_amount", "net_spend")},
    **{f"windows.{w}.{k}": "number" for w in ("7d", "30d", "90d") for k in ("events", "purchases", "spend")},
    **{
        f"funnel.{k}": "number"
        for k in (
            "views",
            "searches",
            "clicks",
            "add_to_cart",
            "favorites",
            "orders",
            "purchases",
            "cart_to_purchase",
            "favorite_to_purchase",
            "abandoned_carts",
        )
    },
    "days_since_last_seen": "number",
    "days_since_last_purchase": "number",
    "aov": "number",
    "purchase_days": "number",
    "peak_hour": "number",
    "category_count": "number",
    "last_return_gap_days": "number",
    "timezone": "string",
    **{f"sentiment.{k}": "number" for k in ("mean", "reviews", "from_text", "positive", "negative", "negative_recent")},
}

#: Paths with a free last part: (shown as, pattern, kind).
PATTERN_FIELDS: tuple[tuple[str, re.Pattern[str], Kind], ...] = (
    ("devices.<name>", re.compile(r"^devices\.[A-Za-z0-9_\-]+$"), "number"),
    ("profile.<name>", re.compile(r"^profile\.[A-Za-z0-9_\-]+$"), "any"),
    ("active_hours.<0-23>", re.compile(r"^active_hours\.(1?[0-9]|2[0-3])$"), "number"),
    ("weekdays.<0-6>", re.compile(r"^weekdays\.[0-6]$"), "number"),
)


def derived_features(
    portrait: RenderedPortrait,
    layer_config: LayerConfig = LayerConfig(),
    lifecycle_config: LifecycleConfig = LifecycleConfig(),
) -> dict[str, Any]:
    """Every feature of :data:`DERIVED_FEATURES` for one portrait (None where undefined).

    >>> from online_models.portrait_types import portrait_from_json
    >>> f = derived_features(portrait_from_json({"active_hours": [2] + [0] * 21 + [2, 4], "funnel": {"views": 20,
    ...                      "add_to_cart": 4, "abandoned_carts": 3}, "devices": {"ios": 0.5, "android": 0.3, "pc": 0.2}}))
    >>> f["night_share"], f["add_to_cart_rate"], f["cart_abandon_rate"], f["mobile_share"], f["refund_rate"]
    (0.75, 0.2, 0.75, 0.8, None)
    """
    return {name: fn(portrait, layer_config, lifecycle_config) for name, (_, _, fn) in DERIVED_FEATURES.items()}


def known_fields(extra_fields: Mapping[str, Kind] | None = None) -> dict[str, Kind]:
    """Every field name a rule may use, with its kind (patterns shown as ``devices.<name>``)."""
    fields: dict[str, Kind] = {name: kind for name, (kind, _, _) in DERIVED_FEATURES.items()}
    fields.update(PORTRAIT_FIELDS)
    fields.update(extra_fields or {})
    fields.update({shown: kind for shown, _, kind in PATTERN_FIELDS})
    return fields


def _field_kind(name: str, extra_fields: Mapping[str, Kind]) -> Kind | None:
    if name in DERIVED_FEATURES:
        return DERIVED_FEATURES[name][0]
    if name in extra_fields:
        return extra_fields[name]
    if name in PORTRAIT_FIELDS:
        return PORTRAIT_FIELDS[name]
    for _, pattern, kind in PATTERN_FIELDS:
        if pattern.match(name):
            return kind
    return None


# -- the rules schema ---------------------------------------------------------------


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("tag_rule", "{message}", {"message": message})


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fits(kind: Kind, value: Any) -> bool:
    if kind == "number":
        return _num(value) is not None
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, (str, bool)) or _num(value) is not None


def _extra_fields(info: ValidationInfo) -> Mapping[str, Kind]:
    return (info.context or {}).get("extra_fields") or {}


class Condition(BaseModel):
    """A comparison ``{field, op, value}`` or a group ``{all: [...]}`` / ``{any: [...]}``."""

    model_config = ConfigDict(frozen=True)

    all: Optional[list["Condition"]] = None
    any: Optional[list["Condition"]] = None
    field: Optional[str] = None
    op: Optional[str] = None
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if data is None or data == {} or data == []:
            raise _error("empty condition; write all: [...], any: [...] or a comparison {field, op, value}")
        if not isinstance(data, Mapping):
            raise _error(f"a condition must be a mapping, got {_type_name(data)} {_show(data)}")
        unknown = [k for k in data if k not in _CONDITION_KEYS]
        if unknown:
            raise _error(f"unknown key {str(unknown[0])!r}; a condition has all, any, or field, op and value")
        groups = [k for k in ("all", "any") if k in data]
        comparison = [k for k in ("field", "op", "value") if k in data]
        if len(groups) > 1 or (groups and comparison):
            raise _error(f"a condition is one of all, any or a comparison; this one mixes {', '.join(groups + comparison)}")
        if not groups:
            missing = [k for k in ("field", "op", "value") if k not in data]
            if missing:
                raise _error(f"a comparison needs field, op and value; missing {', '.join(missing)}")
        return data

    @field_validator("all", "any", mode="before")
    @classmethod
    def _group(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value == []:
            raise _error(f"empty condition: '{info.field_name}' needs at least one condition")
        if not isinstance(value, list):
            raise _error(f"'{info.field_name}' needs a list of conditions, got {_type_name(value)} {_show(value)}")
        return value

    @field_validator("field", mode="before")
    @classmethod
    def _field(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            raise _error(f"field must be a string, got {_type_name(value)} {_show(value)}")
        extra = _extra_fields(info)
        if _field_kind(value, extra) is None:
            known = list(known_fields(extra))
            close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
            hint = f" did you mean {close[0]!r}?" if close else ""
            raise _error(f"unknown field {value!r};{hint} known: {', '.join(known)}")
        return value

    @field_validator("op", mode="before")
    @classmethod
    def _op(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in OPS or not isinstance(value, str):
            hint = ""
            if isinstance(value, str) and not value.strip():
                hint = "; quote the signs in YAML (op: \">\"): a bare > starts a folded text block"
            raise _error(f"unknown op {_show(value)}; known: {' '.join(OPS)}{hint}")
        name = info.data.get("field")
        kind = None if name is None else _field_kind(name, _extra_fields(info))
        if value in _ORDERING and kind in ("string", "bool"):
            raise _error(f"op '{value}' needs a number field; {name!r} is a {kind}, use == != in not_in")
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        op, name = info.data.get("op"), info.data.get("field")
        if op is None or name is None:  # the field or op is wrong: reported already
            return value
        kind = _field_kind(name, _extra_fields(info)) or "any"
        if op in _ORDERING:
            if _num(value) is None:
                raise _error(f"'{op}' needs a number, got {_type_name(value)} {_show(value)}")
        elif op in ("==", "!="):
            if value is not None and not _fits(kind, value):
                raise _error(f"'{op}' on {kind} field {name!r} needs a {kind} or null, got {_type_name(value)} {_show(value)}")
        else:
            if not isinstance(value, list) or not value:
                raise _error(f"'{op}' needs a non-empty list, got {_type_name(value)} {_show(value)}")
            for i, item in enumerate(value):
                if not _fits(kind, item):
                    raise _error(f"'{op}' on {kind} field {name!r}: item {i} is {_type_name(item)} {_show(item)}")
        return value


class TagSpec(BaseModel):
    """One tag: ``name`` (lower_snake_case), ``description`` and condition ``when``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    when: Condition

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _TAG_NAME.match(value):
            raise _error(f"tag name must be lower_snake_case (a-z, 0-9, _; at most 64), got {_show(value)}")
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise _error("description must be a non-empty string")
        return value


class RulesFile(BaseModel):
    """The whole file: ``version: 1`` (optional) and ``tags: [...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    tags: list[TagSpec]


# -- loading and evaluation ------------------------------------------------------------


class TagRulesError(ValueError):
    """Invalid tag rules; ``problems`` holds one ``path: message`` line per mistake."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid tag rules in {source}:\n" + "\n".join(f"  {p}" for p in problems))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        kind, message = item["type"], item["msg"]
        if kind == "tag_rule":
            message = item["ctx"]["message"]
        elif kind == "missing":
            message = "required key is missing"
        elif kind == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{_path(item['loc'])}: {message.removeprefix('Value error, ')}")
    return problems


#: what the evaluation's cache holds for a field not read yet
_UNREAD = object()

#: a compiled condition: a test of a field reader (name -> value, each derived feature computed once)
_Compiled = Callable[[Callable[[str], Any]], bool]


def _compare(op: str, actual: Any, value: Any) -> bool:
    if actual is None:
        return op == "==" and value is None
    if op in _ORDERING:
        a, v = _num(actual), _num(value)
        if a is None or v is None:
            return False
        return a > v if op == ">" else a >= v if op == ">=" else a < v if op == "<" else a <= v
    if op in ("==", "!="):
        equal = isinstance(actual, bool) == isinstance(value, bool) and actual == value
        return equal if op == "==" else not equal
    inside = any(isinstance(actual, bool) == isinstance(v, bool) and actual == v for v in value)
    return inside if op == "in" else not inside


_ORDER_TESTS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _cost(condition: Condition) -> int:
    """How many derived features a condition may compute: parts of ``all``/``any`` run cheapest first."""
    if condition.all is not None or condition.any is not None:
        return sum(_cost(c) for c in condition.all or condition.any or ())
    return 1 if condition.field in DERIVED_FEATURES else 0


def _compile(condition: Condition) -> _Compiled:
    """A test of ``get`` (field -> value) equivalent to ``condition``, with the ordering's bound parsed once.

    Conditions are pure, so the parts of ``all`` and ``any`` are tried in an order
    that reads plain portrait fields before derived features: same answer, less work.
    """
    if condition.all is not None or condition.any is not None:
        every = condition.all is not None
        parts = tuple(_compile(c) for c in sorted(condition.all if every else condition.any, key=_cost))

        def all_of(get: Callable[[str], Any]) -> bool:
            for part in parts:
                if not part(get):
                    return False
            return True

        def any_of(get: Callable[[str], Any]) -> bool:
            for part in parts:
                if part(get):
                    return True
            return False

        return all_of if every else any_of
    field, op, value = condition.field, condition.op, condition.value
    assert field is not None and op is not None
    if op in _ORDER_TESTS:
        order, bound = _ORDER_TESTS[op], _num(value)

        def ordered(get: Callable[[str], Any]) -> bool:
            if bound is None:
                return False
            actual = get(field)
            if actual is None or actual is True or actual is False:
                return False
            if type(actual) is not float and type(actual) is not int:
                actual = _num(actual)
                if actual is None:
                    return False
            return actual == actual and order(actual, bound)  # NaN compares false

        return ordered
    return lambda get: _compare(op, get(field), value)


def _fields(rules: RulesFile) -> set[str]:
    """Every field the rules read."""
    found: set[str] = set()

    def walk(condition: Condition) -> None:
        for part in condition.all or condition.any or ():
            walk(part)
        if condition.field is not None:
            found.add(condition.field)

    for tag in rules.tags:
        walk(tag.when)
    return found


#: the wire names of path steps whose attribute is named otherwise
_ATTRIBUTE_OF = {key: attribute for attribute, key in Windows.KEYS}


def _step(node: Any, step: str) -> Any:
    """One step of a declared path (``extra_fields``) on a typed portrait: an attribute, a key or a position."""
    if isinstance(node, Mapping):
        return node.get(step)
    if isinstance(node, list):
        return node[int(step)] if step.isdigit() and int(step) < len(node) else None
    return getattr(node, _ATTRIBUTE_OF.get(step, step), None)


def _reader(name: str, extra_fields: Mapping[str, Kind]) -> Callable[[RenderedPortrait, LayerConfig, LifecycleConfig], Any]:
    """The function reading field ``name`` of a portrait, resolved once when the rules load.

    A derived feature, a path of the portrait (an attribute chain: ``windows.30d.spend`` reads
    ``windows.d30.spend``), a named entry of ``devices`` or ``profile``, an hour or a weekday,
    or a path declared in ``extra_fields`` (walked step by step, None where a step is missing).
    """
    feature = DERIVED_FEATURES.get(name)
    if feature is not None:
        return feature[2]
    if name in PORTRAIT_FIELDS:
        get = attrgetter(".".join(_ATTRIBUTE_OF.get(step, step) for step in name.split(".")))
        return lambda p, *_: get(p)
    head, _, rest = name.partition(".")
    if name not in extra_fields:
        if head in ("devices", "profile"):
            return lambda p, *_: getattr(p, head).get(rest)
        if head in ("active_hours", "weekdays"):
            position = int(rest)
            return lambda p, *_: getattr(p, head)[position]
    steps = name.split(".")

    def walk(p: RenderedPortrait, *_: Any) -> Any:
        node: Any = p
        for step in steps:
            node = _step(node, step)
            if node is None:
                return None
        return node

    return walk


class TagRules:
    """A validated set of tag rules; :meth:`evaluate` lists the tags a portrait carries.

    ``layer_config`` and ``lifecycle_config`` set how the derived ``value_layer``
    and ``lifecycle_stage`` are computed.
    """

    def __init__(
        self,
        rules: RulesFile,
        *,
        layer_config: LayerConfig = LayerConfig(),
        lifecycle_config: LifecycleConfig = LifecycleConfig(),
        extra_fields: Mapping[str, Kind] | None = None,
    ):
        self.rules = rules
        self.layer_config = layer_config
        self.lifecycle_config = lifecycle_config
        self._compiled = [(tag.name, _compile(tag.when)) for tag in rules.tags]
        self._readers = {name: _reader(name, extra_fields or {}) for name in _fields(rules)}

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        source: str = "<dict>",
        extra_fields: Mapping[str, Kind] | None = None,
        **configs: Any,
    ) -> "TagRules":
        """Validate parsed rules; raise :class:`TagRulesError` listing every mistake.

        ``extra_fields`` declares further portrait paths (``{"churn.probability": "number"}``).
        """
        if not isinstance(data, Mapping):
            what = "empty" if data is None else f"a {_type_name(data)}"
            raise TagRulesError(source, [f"<root>: the rules must be a mapping with a 'tags' list; the file is {what}"])
        try:
            rules = RulesFile.model_validate(data, context={"extra_fields": dict(extra_fields or {})})
        except ValidationError as error:
            raise TagRulesError(source, _problems(error)) from None
        first: dict[str, int] = {}
        problems = []
        for i, tag in enumerate(rules.tags):
            if tag.name in first:
                problems.append(f"tags[{i}].name: duplicate tag name {tag.name!r} (first at tags[{first[tag.name]}])")
            first.setdefault(tag.name, i)
        if problems:
            raise TagRulesError(source, problems)
        return cls(rules, extra_fields=extra_fields or {}, **configs)

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>", **kwargs: Any) -> "TagRules":
        """Validate rules from YAML text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TagRulesError(source, [f"<root>: not valid YAML: {' '.join(str(error).split())}"]) from None
        return cls.from_dict(data, source=source, **kwargs)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> "TagRules":
        """Validate a YAML rules file."""
        path = Path(path)
        return cls.loads(path.read_text(encoding="utf-8"), source=str(path), **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> "TagRules":
        """The rules shipped in ``online_models/rules/tags.yaml``."""
        resource = resources.files("online_models").joinpath("rules").joinpath("tags.yaml")
        return cls.loads(resource.read_text(encoding="utf-8"), source="online_models/rules/tags.yaml", **kwargs)

    @property
    def names(self) -> list[str]:
        """Tag names, in file order."""
        return [tag.name for tag in self.rules.tags]

    @property
    def descriptions(self) -> dict[str, str]:
        """Tag name -> description."""
        return {tag.name: tag.description for tag in self.rules.tags}

    def evaluate(self, portrait: RenderedPortrait) -> list[str]:
        """Names of the tags whose condition holds for ``portrait``, sorted."""
        cache: dict[str, Any] = {}
        readers, layers, lifecycle = self._readers, self.layer_config, self.lifecycle_config

        def get(name: str) -> Any:  # each field read once (no KeyError raised per first read: hot path)
            value = cache.get(name, _UNREAD)
            if value is _UNREAD:
                value = cache[name] = readers[name](portrait, layers, lifecycle)
            return value

        return sorted(name for name, test in self._compiled if test(get))

    def __repr__(self) -> str:
        return f"TagRules({len(self._compiled)} tags: {', '.join(self.names)})"
