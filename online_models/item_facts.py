"""Item facts: what the users' engine tells the items' engines about one event, re-keyed by item and category.

The users' engine knows each buyer at the moment of a purchase; the items'
engines own items and categories. Between them runs the ``item-facts`` topic
(Kafka Streams' repartition pattern): for every event of a counted type
(:data:`ITEM_FACT_TYPES`) that names an item or a category, the users' engine
sends one small record keyed ``item:<item_id>`` and one keyed
``category:<name>`` (:func:`item_key`, :func:`category_key`; the prefixes keep an
item and a category of the same name apart). The record carries no user id.

A purchase also moves the buyer's *contribution* to the key's buyer counts: the
buyer's latest purchase day of the item (or category), the one before it, and
who the buyer was at the latest purchase (:class:`BuyerAttributes`). The users'
state remembers the contribution it last reported per key (``bought_items``,
``bought_categories``), so a fact says what to take away (``was``) and what to
add (``now``): the items' side then counts each buyer once per window, and
repeat buyers exactly, without keeping a list of buyers. Those memories are
bounded (:class:`online_models.portrait.PortraitConfig`'s ``max_bought_items``
and ``max_bought_categories``): a user who bought more distinct items within a
window than the memory keeps, and buys an evicted one again, counts twice there.

>>> from online_models.events import parse_event
>>> from online_models.portrait import PortraitConfig, PortraitState, update
>>> state, config = PortraitState("u1"), PortraitConfig()
>>> pay = parse_event(b'{"event_id":"p1","user_id":"u1","type":"pay","ts":1714536000000,"amount":30,'
...                   b'"item_id":"sku-1","category":"snacks"}')
>>> _ = update(state, pay, watermark=0, config=config)
>>> buyer = buyer_attributes(state, pay.ts, models=None, config=config)
>>> buyer
BuyerAttributes(layer='ordinary', segment=None, age_band=None)
>>> facts = facts_for(state, pay, partition=3, offset=41, buyer=buyer, config=config)
>>> [key for key, _ in facts]
[b'item:sku-1', b'category:snacks']
>>> fact = parse_item_fact(*facts[0]); fact.cents, fact.source, fact.was, fact.now
(3000, (3, 41), None, Contribution(latest_day=19844, second_day=None, layer='ordinary', segment=None, age_band=None))
>>> again = facts_for(state, pay, partition=3, offset=42, buyer=buyer, config=config)  # the same buyer, the same day
>>> parse_item_fact(*again[0]).now is None  # counted already: nothing moves
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from online_models.clock import ceil_minute
from online_models.events import InvalidEvent, Event
from online_models.features import behaviour_features
from online_models.portrait import PortraitConfig, PortraitState, render
from online_models.rfm import LAYERS, LayerConfig
from online_models.schedule import layer_at
from online_models.vocabulary import local_day

#: event types the item and category portraits count
ITEM_FACT_TYPES = frozenset({"view", "add_to_cart", "favorite", "pay", "refund"})
#: dead-letter reason of a record of the item-facts topic that is not an item fact
INVALID_ITEM_FACT = "invalid_item_fact"
ITEM_PREFIX = "item:"
CATEGORY_PREFIX = "category:"


def item_key(item_id: str) -> str:
    """The key of an item's facts and portrait.

    >>> item_key("sku-1"), category_key("snacks")
    ('item:sku-1', 'category:snacks')
    """
    return ITEM_PREFIX + item_id


def category_key(name: str) -> str:
    """The key of a category's facts and portrait."""
    return CATEGORY_PREFIX + name


def split_key(key: str) -> tuple[str, str] | None:
    """``("item", id)`` or ``("category", name)`` of a key; None for anything else.

    >>> split_key("item:a:b"), split_key("category:toys"), split_key("toys")
    (('item', 'a:b'), ('category', 'toys'), None)
    """
    for kind, prefix in (("item", ITEM_PREFIX), ("category", CATEGORY_PREFIX)):
        if key.startswith(prefix) and len(key) > len(prefix):
            return kind, key[len(prefix) :]
    return None


@dataclass(frozen=True, slots=True)
class BuyerAttributes:
    """Who a buyer is at a purchase: value layer, segment (None: not seeded yet), age band (None: not given)."""

    layer: str
    segment: int | None
    age_band: str | None


@dataclass(frozen=True, slots=True)
class Contribution:
    """A buyer's share of one key's buyer counts: their latest and previous distinct purchase days
    (shop time zone) of the key, and who they were at the latest purchase."""

    latest_day: int
    second_day: int | None
    layer: str
    segment: int | None
    age_band: str | None

    def to_list(self) -> list[Any]:
        """The compact form kept in the users' state and sent in facts."""
        return [self.latest_day, self.second_day, self.layer, self.segment, self.age_band]

    @classmethod
    def from_list(cls, values: list[Any]) -> "Contribution":
        """Inverse of :meth:`to_list`; ValueError for anything else."""
        if not isinstance(values, list) or len(values) != 5:
            raise ValueError("a contribution is [latest_day, second_day, layer, segment, age_band]")
        latest, second, layer, segment, age_band = values
        if type(latest) is not int or (second is not None and (type(second) is not int or second >= latest)):
            raise ValueError("latest_day must be an integer above second_day (or second_day null)")
        if layer not in LAYERS or (segment is not None and type(segment) is not int):
            raise ValueError("layer must be a value layer and segment an integer or null")
        if age_band is not None and not isinstance(age_band, str):
            raise ValueError("age_band must be a string or null")
        return cls(latest, second, layer, segment, age_band)


@dataclass(frozen=True, slots=True)
class ItemFact:
    """One event as an item or category engine folds it; ``source`` is where the event was read
    (its partition and offset of the events topic): the items' side skips a fact from a source
    position it has already folded in, which makes a re-sent fact harmless."""

    event_id: str
    type: str
    ts: int
    day: int
    item_id: str | None
    category: str | None
    cents: int
    source: tuple[int, int]
    was: Contribution | None = None
    now: Contribution | None = None


def buyer_attributes(state: PortraitState, ts: int, *, models, config: PortraitConfig) -> BuyerAttributes:
    """The buyer's attributes at a purchase at ``ts`` already folded into ``state``.

    The value layer is the one the portrait would show at the purchase's minute
    (``as_of = ceil_minute(ts)``) with what the state holds so far; the segment is the
    latest models' for the same portrait (None while the segment model is not seeded);
    the age band is the profile's.
    """
    as_of = ceil_minute(ts)
    layers = models.config.layers if models is not None else LayerConfig()
    segment = None
    if models is not None and models.segments.seeded:
        segment = int(models.segments.predict_one(behaviour_features(render(state, as_of=as_of, config=config))))
    band = state.profile.get("age_band")
    return BuyerAttributes(layer_at(state, as_of, layers), segment, band if isinstance(band, str) and band else None)


def remember_purchase(
    memory: dict[str, list], name: str, day: int, buyer: BuyerAttributes, cap: int
) -> tuple[Contribution | None, Contribution] | None:
    """Move the buyer's contribution to ``name`` for a purchase on ``day``: ``(was, now)``, None when it stays.

    A purchase on the latest day or later sets who the buyer was; an older one only
    moves the previous day. Past ``cap`` keys the one with the oldest latest day is forgotten.

    >>> memory, buyer = {}, BuyerAttributes("ordinary", None, "25-29")
    >>> remember_purchase(memory, "sku", 10, buyer, 5)[1].to_list()
    [10, None, 'ordinary', None, '25-29']
    >>> remember_purchase(memory, "sku", 10, buyer, 5) is None  # the same day again: nothing moves
    True
    >>> was, now = remember_purchase(memory, "sku", 7, BuyerAttributes("potential", 2, None), 5)
    >>> now.to_list()  # an older purchase arriving late: the previous day moves, the buyer stays who they were
    [10, 7, 'ordinary', None, '25-29']
    """
    raw = memory.get(name)
    old = Contribution.from_list(raw) if raw is not None else None
    if old is None:
        new = Contribution(day, None, buyer.layer, buyer.segment, buyer.age_band)
    elif day > old.latest_day:
        new = Contribution(day, old.latest_day, buyer.layer, buyer.segment, buyer.age_band)
    elif day == old.latest_day:
        new = Contribution(day, old.second_day, buyer.layer, buyer.segment, buyer.age_band)
    elif old.second_day is None or day > old.second_day:
        new = Contribution(old.latest_day, day, old.layer, old.segment, old.age_band)
    else:
        return None
    if new == old:
        return None
    memory[name] = new.to_list()
    if len(memory) > cap:
        del memory[min(memory, key=lambda key: (memory[key][0], key))]
    return old, new


def facts_for(
    state: PortraitState, event: Event, *, partition: int, offset: int, buyer: BuyerAttributes | None, config: PortraitConfig
) -> list[tuple[bytes, bytes]]:
    """The facts (key, value) of an event just folded into ``state``; none for an event the item portraits do not count.

    ``buyer`` (a purchase's :func:`buyer_attributes`) moves the buyer's contributions in
    ``state``'s memories; every other fact is one value sent under both keys.
    """
    if event.type not in ITEM_FACT_TYPES or not (event.item_id or event.category):
        return []
    day = local_day(event.ts, config.timezone)
    body = {
        "event_id": event.event_id,
        "type": event.type,
        "ts": event.ts,
        "day": day,
        "item_id": event.item_id,
        "category": event.category,
        "cents": event.amount_cents if event.type in ("pay", "refund") else 0,
        "source": [partition, offset],
    }
    keys = []
    if event.item_id:
        keys.append((item_key(event.item_id), state.bought_items, event.item_id, config.max_bought_items))
    if event.category:
        keys.append((category_key(event.category), state.bought_categories, event.category, config.max_bought_categories))
    if buyer is None:
        value = orjson.dumps(body)
        return [(key.encode(), value) for key, *_ in keys]
    facts = []
    for key, memory, name, cap in keys:
        moved = remember_purchase(memory, name, day, buyer, cap)
        if moved is not None:
            was, now = moved
            body["was"], body["now"] = (None if was is None else was.to_list()), now.to_list()
        else:
            body["was"] = body["now"] = None
        facts.append((key.encode(), orjson.dumps(body)))
    return facts


def _text(body: dict, name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _integer(body: dict, name: str, low: int | None = None) -> int:
    value = body.get(name)
    if type(value) is not int or (low is not None and value < low):
        raise ValueError(f"{name} must be an integer" + ("" if low is None else f" >= {low}"))
    return value


def parse_item_fact(key: bytes | None, value: bytes | None) -> ItemFact:
    """A record of the item-facts topic as an :class:`ItemFact`; :class:`InvalidEvent` (``invalid_item_fact``)
    for a record that is not one, or whose key does not name its item or category."""
    try:
        if key is None or value is None:
            raise ValueError("an item fact has a key and a value")
        named = split_key(key.decode("utf-8"))
        body = orjson.loads(value)
        if named is None or not isinstance(body, dict):
            raise ValueError("the key is item:<id> or category:<name>, the value a JSON object")
        kind = _text(body, "type")
        if kind not in ITEM_FACT_TYPES:
            raise ValueError(f"type {kind[:40]!r} is not counted")
        item_id, category = _text(body, "item_id", required=False), _text(body, "category", required=False)
        if named != ("item", item_id) and named != ("category", category):
            raise ValueError("the key names neither the fact's item nor its category")
        source = body.get("source")
        if not (isinstance(source, list) and len(source) == 2 and all(type(x) is int and x >= 0 for x in source)):
            raise ValueError("source must be [partition, offset]")
        moves = [None if body.get(name) is None else Contribution.from_list(body[name]) for name in ("was", "now")]
        if moves[0] is not None and moves[1] is None:
            raise ValueError("a contribution taken away is replaced")
        return ItemFact(
            event_id=_text(body, "event_id"),
            type=kind,
            ts=_integer(body, "ts"),
            day=_integer(body, "day"),
            item_id=item_id,
            category=category,
            cents=_integer(body, "cents", 0),
            source=(source[0], source[1]),
            was=moves[0],
            now=moves[1],
        )
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as error:
        raise InvalidEvent(INVALID_ITEM_FACT, str(error)[:200]) from None
