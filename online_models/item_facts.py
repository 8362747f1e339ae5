"""Item facts: what the users' engine tells the items' engines about one event, re-keyed by item and category.

The users' engine knows each buyer at the moment of a purchase; the items'
engines own items and categories. Between them runs the ``item-facts`` topic
(Kafka Streams' repartition pattern): for every event of a counted type
(:data:`ITEM_FACT_TYPES`) that names an item or a category, the users' engine
makes one small fact for the key ``item:<item_id>`` and one for
``category:<name>`` (:func:`item_key`, :func:`category_key`; the prefixes keep an
item and a category of the same name apart). A fact carries no user id, nor the
event's id (producers may make those of user ids): its ``source``, the event's
partition and offset of the events topic, says which event it is.

A record of the topic is a *pack*: a JSON array of facts, each naming its key
(:func:`pack_facts`, :func:`parse_item_facts`), every one of them a key of the
record's partition (the record's key is its first fact's key). The worker packs
the facts a user partition made between two of its flushes by the item partition
they go to, so the item engines read one record per pack, not one per fact; a
pack of one fact is a record too.

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
>>> fact = parse_item_facts(pack_facts(value for _, value in facts))[0]
>>> fact.key, fact.cents, fact.source, fact.was, fact.now
('item:sku-1', 3000, (3, 41), None, Contribution(latest_day=19844, second_day=None, layer='ordinary', segment=None, age_band=None))
>>> again = facts_for(state, pay, partition=3, offset=42, buyer=buyer, config=config)  # the same buyer, the same day
>>> parse_item_facts(pack_facts([again[0][1]]))[0].now is None  # counted already: nothing moves
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from online_models.clock import ceil_minute
from online_models.events import Event, InvalidEvent
from online_models.features import state_features
from online_models.portrait import PortraitConfig, PortraitState
from online_models.rfm import LAYERS, LayerConfig
from online_models.schedule import layer_at
from online_models.vocabulary import local_day

#: event types the item and category portraits count
ITEM_FACT_TYPES = frozenset({"view", "add_to_cart", "favorite", "pay", "refund"})
#: dead-letter reason of a record of the item-facts topic that is not an item fact
INVALID_ITEM_FACT = "invalid_item_fact"
#: most item facts in one record of the item-facts topic (a few hundred bytes each, far below the record limit)
MAX_PACKED_FACTS = 500
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


@dataclass(slots=True)
class ItemFact:
    """One event as an item or category engine folds it under ``key``; ``source`` is where the event
    was read (its partition and offset of the events topic): the items' side skips a fact from a
    source position it has already folded in, which makes a re-sent fact harmless."""

    key: str
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
        segment = int(models.segments.predict_one(state_features(state, as_of=as_of, config=config)))
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

    ``buyer`` (a purchase's :func:`buyer_attributes`) moves the buyer's contributions in ``state``'s memories.
    """
    if event.type not in ITEM_FACT_TYPES or not (event.item_id or event.category):
        return []
    day = local_day(event.ts, config.timezone)
    body = {
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
    shared = orjson.dumps(body) if buyer is None else b""  # one encoding for both keys, each key put in front
    facts = []
    for key, memory, name, cap in keys:
        if buyer is not None:
            moved = remember_purchase(memory, name, day, buyer, cap)
            was, now = moved if moved is not None else (None, None)
            body["was"], body["now"] = (None if was is None else was.to_list()), (None if now is None else now.to_list())
            shared = orjson.dumps(body)
        facts.append((key.encode(), b'{"key":' + orjson.dumps(key) + b"," + shared[1:]))
    return facts


def pack_facts(values: Iterable[bytes]) -> bytes:
    """One record of the item-facts topic holding the facts ``values`` (each a fact's JSON), in order.

    >>> pack_facts([b'{"a":1}', b'{"b":2}'])
    b'[{"a":1},{"b":2}]'
    """
    return b"[" + b",".join(values) + b"]"


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _fact(body: Any) -> ItemFact:
    """One fact of a pack; ValueError (or KeyError, TypeError) for anything else."""
    if type(body) is not dict:
        raise ValueError("a fact is a JSON object")
    key, kind, ts, day, cents, source = body["key"], body["type"], body["ts"], body["day"], body["cents"], body["source"]
    if kind not in ITEM_FACT_TYPES:
        raise ValueError(f"type {str(kind)[:40]!r} is not counted")
    if type(ts) is not int or type(day) is not int or not _is_count(cents):
        raise ValueError("ts and day must be integers, cents one >= 0")
    if type(source) is not list or len(source) != 2 or not (_is_count(source[0]) and _is_count(source[1])):
        raise ValueError("source must be [partition, offset]")
    item_id, category = body.get("item_id"), body.get("category")
    if not ((type(item_id) is str and key == ITEM_PREFIX + item_id) or (type(category) is str and key == CATEGORY_PREFIX + category)):
        raise ValueError("key must be item:<item_id> or category:<category> of the fact")
    was, now = body.get("was"), body.get("now")
    if was is not None and now is None:
        raise ValueError("a contribution taken away is replaced")
    return ItemFact(
        key,
        kind,
        ts,
        day,
        item_id if type(item_id) is str else None,
        category if type(category) is str else None,
        cents,
        (source[0], source[1]),
        None if was is None else Contribution.from_list(was),
        None if now is None else Contribution.from_list(now),
    )


def parse_item_facts(value: bytes | None) -> list[ItemFact]:
    """The facts of a record of the item-facts topic (a pack, :func:`pack_facts`), in order;
    :class:`InvalidEvent` (``invalid_item_fact``) naming the first that is not a fact, and nothing else."""
    try:
        facts = orjson.loads(value)
        if type(facts) is not list or not facts:
            raise ValueError("a record of item facts is a JSON array of them")
    except (ValueError, TypeError) as error:  # orjson's errors are ValueErrors
        raise InvalidEvent(INVALID_ITEM_FACT, str(error)[:200]) from None
    out = []
    for i, body in enumerate(facts):
        try:
            out.append(_fact(body))
        except (ValueError, KeyError, TypeError) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise InvalidEvent(INVALID_ITEM_FACT, f"fact {i}: {detail}"[:200]) from None
    return out
