"""Instants written out (``iso``) and read back (``instant_ms``), against the standard library."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from online_models.clock import instant_ms, iso

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: from year 1 to year 9999, as far as datetime goes
SPAN = st.integers(-62_135_596_800_000, 253_402_300_799_999)


@given(SPAN)
def test_iso_writes_what_datetime_writes(ts_ms):
    expected = (EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(ts_ms) == expected


@given(SPAN)
def test_an_instant_written_reads_back_to_the_millisecond(ts_ms):
    assert instant_ms(iso(ts_ms)) == ts_ms
