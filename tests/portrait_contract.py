"""The published portraits' contracts as the tests hold them: the models, strictly, with no field unknown or missing."""

from __future__ import annotations

from typing import Any

import orjson

from online_models.portrait_schema import ItemPortrait, Portrait


def check_published(value: bytes | dict[str, Any]) -> Portrait:
    """``value`` (a record of the portraits topic, or its parsed JSON) as the model, strictly.

    Strict types (no ``"12"`` for 12), and every object closed: a field the model
    does not describe fails, as does a required one that is missing.
    """
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Portrait.model_validate_json(raw, strict=True, extra="forbid")


def check_item_published(value: bytes | dict[str, Any]) -> ItemPortrait:
    """``value`` (a record of the item-portraits topic, or its parsed JSON) as the model, as strictly."""
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return ItemPortrait.model_validate_json(raw, strict=True, extra="forbid")
