"""The fields of a stored portrait the query side reads, declared once and checked against the schema at import.

The API keeps portraits as the JSON of the ``portraits`` topic and reads them without parsing
them into models (the store holds a million). Each place in that JSON the indexes, the
audiences, the AARRR counters, the association and model re-scoring read is a
:class:`PortraitPath` declared here with :func:`declare`, which checks every step against
:class:`online_models.portrait_schema.Portrait` (wire names, list positions, the free keys of
a mapping): a renamed field fails at import, not with silently empty answers.

:meth:`PortraitPath.read` reads defensively, as a portrait of an older or newer worker needs:
None when any step is missing or of the wrong kind.

>>> WINDOW_PURCHASES[30].read({"windows": {"30d": {"purchases": 2}}}), TOP_CATEGORY.read({"top_categories": []})
(2, None)
>>> declare("windows.30d.orders")
Traceback (most recent call last):
...
ValueError: portrait path 'windows.30d.orders': WindowTotals has no field 'orders'
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from online_models.portrait_schema import Portrait

__all__ = ["PortraitPath", "declare"]


def _models_in(annotation: Any) -> list[Any]:
    """The parts of a (possibly optional) annotation: ``X | None`` gives ``[X]``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _step_into(annotation: Any, step: str | int, dotted: str) -> Any:
    """The annotation one step below ``annotation``, or ValueError when the schema has no such step."""
    for part in _models_in(annotation):
        if isinstance(part, type) and issubclass(part, BaseModel):
            if isinstance(step, str):
                for name, info in part.model_fields.items():
                    if (info.alias or name) == step:
                        return info.annotation
            raise ValueError(f"portrait path {dotted!r}: {part.__name__} has no field {step!r}")
        origin = typing.get_origin(part)
        if origin is list and isinstance(step, int):
            return typing.get_args(part)[0]
        if origin is dict and isinstance(step, str):
            return typing.get_args(part)[1]
    raise ValueError(f"portrait path {dotted!r}: no step {step!r} below {annotation!r}")


class PortraitPath(tuple):
    """The steps to one value of a portrait's JSON: keys, and positions in lists."""

    __slots__ = ()

    @property
    def dotted(self) -> str:
        """The path as written, e.g. ``windows.30d.purchases``."""
        return ".".join(map(str, self))

    def read(self, portrait: Any) -> Any:
        """The value at this path, or None when any step is missing or of the wrong kind.

        >>> declare("top_categories.0.category").read({"top_categories": [{"category": "snacks"}]})
        'snacks'
        >>> declare("segment.id").read({"segment": None}), declare("tags").read("not a portrait")
        (None, None)
        """
        value = portrait
        for step in self:
            if type(step) is int and isinstance(value, list):
                if not -len(value) <= step < len(value):
                    return None
                value = value[step]
            elif isinstance(value, Mapping):
                value = value.get(step if type(step) is str else str(step))
            else:
                return None
            if value is None:
                return None
        return value

    @classmethod
    def of(cls, dotted: str) -> "PortraitPath":
        """The path ``dotted`` as written (steps by ``.``, list positions as numbers), unchecked: a
        projection a request names (:func:`api.audiences.pick`)."""
        return cls(int(step) if step.lstrip("-").isdigit() else step for step in dotted.split("."))


def declare(dotted: str) -> PortraitPath:
    """The path ``dotted`` (steps by ``.``, list positions as numbers), checked against the portrait's schema."""
    path = PortraitPath.of(dotted)
    annotation: Any = Portrait
    for step in path:
        annotation = _step_into(annotation, step, dotted)
    return path


AS_OF = declare("as_of")
TIMEZONE = declare("timezone")
FIRST_SEEN = declare("first_seen")
FIRST_PURCHASE = declare("first_purchase")
WEEKS = declare("weeks")
LIFETIME_SPEND = declare("lifetime.spend")
#: ``windows.<N>d.purchases`` and ``.spend`` by the window's days
WINDOW_PURCHASES = types.MappingProxyType({days: declare(f"windows.{days}d.purchases") for days in (7, 30, 90)})
WINDOW_SPEND = types.MappingProxyType({days: declare(f"windows.{days}d.spend") for days in (7, 30, 90)})
ACTIVE_HOURS = declare("active_hours")
WEEKDAYS = declare("weekdays")
TOP_CATEGORIES = declare("top_categories")
TOP_CATEGORY = declare("top_categories.0.category")
LAST_ABANDONED_CART = declare("funnel.last_abandoned_cart")
#: the funnel's visit and same-day counts the group portrait sums (each aggregated under its last step)
FUNNEL_TOTALS = tuple(declare(f"funnel.{name}") for name in ("visits", "visit_views", "item_purchases", "same_day_purchases"))
DEVICES = declare("devices")
PAYMENT_METHODS = declare("payment_methods")
BOUGHT_ITEMS = declare("bought_items")
#: the static attributes the audiences filter on and the indexes list, by name
PROFILE_ATTRIBUTES = types.MappingProxyType({name: declare(f"profile.{name}") for name in ("age_band", "gender", "region", "city_tier")})
RFM_LAYER = declare("rfm.layer")
LIFECYCLE = declare("lifecycle")
SEGMENT_ID = declare("segment.id")
SEGMENT_NAME = declare("segment.name")
TAGS = declare("tags")
CHURN = declare("churn")
CHURN_RISK = declare("churn.risk")
CHURN_MODEL_VERSION = declare("churn.model_version")
CLV_VALUE = declare("clv.value")
PRICE_BAND = declare("price_band.band")
NEXT_CATEGORIES = declare("next_categories")

