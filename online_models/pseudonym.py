"""Pseudonymous user ids: a keyed hash that replaces the id a shop sends.

With a secret configured (``PORTRAITS_PSEUDONYM_KEY``) the worker stores, publishes
and scores users under :func:`pseudonym` of their id, and the API applies the
same function to the id an operator looks up, so nothing downstream of
admission holds the real id while lookups by it still work. Without the secret
the hash cannot be recomputed, so the pseudonyms do not lead back to people.

>>> pseudonym("u0001", b"shop secret")
'9264badd90d1e5df1785079fd8d5cfb9'
>>> len(pseudonym("u0001", b"k")), pseudonym("u0001", b"k") == pseudonym("u0001", b"k")
(32, True)
>>> pseudonym("u0001", b"k") != pseudonym("u0001", b"other key")
True
>>> user_key("u0001", None)
'u0001'
"""

from __future__ import annotations

import hashlib
import hmac

#: Hex digits kept of the HMAC-SHA256 digest (128 bits: no collisions in practice).
PSEUDONYM_LENGTH = 32


def pseudonym(user_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the user id under ``key``, as ``PSEUDONYM_LENGTH`` lowercase hex digits."""
    if not key:
        raise ValueError("the pseudonym key must not be empty")
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def user_key(user_id: str, key: bytes | None) -> str:
    """The id the product stores a user under: the pseudonym with a key, else the id itself."""
    return user_id if key is None else pseudonym(user_id, key)
