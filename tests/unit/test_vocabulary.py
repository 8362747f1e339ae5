"""The shop's calendar: hours, weekdays, days and weeks agree with the time-zone database, across offset changes."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from online_models.vocabulary import day_number, local_calendar, local_day, local_hour_weekday, week_of_day, week_start

ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu", "Africa/Monrovia")


@pytest.mark.parametrize("zone", ZONES)
def test_the_calendar_is_the_zone_databases(zone):
    rng = random.Random(zone)
    tz = ZoneInfo(zone)
    # random instants since 1970, and the minutes around every offset change of 2024 (and Monrovia's of 1972)
    instants = [rng.randrange(0, 2_000_000_000_000) for _ in range(3000)]
    for year in (1972, 2024):
        start = int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
        for minute in range(0, 366 * 24 * 60, 7):
            ts = start + minute * 60_000
            if tz.utcoffset(datetime.fromtimestamp(ts / 1000, timezone.utc)) != tz.utcoffset(datetime.fromtimestamp(ts / 1000 + 420, timezone.utc)):
                instants += [ts + delta for delta in range(-60_000, 480_001, 500)]
    for ts in instants:
        moment = datetime.fromtimestamp(ts / 1000, tz)
        day = day_number(moment.date())
        assert local_calendar(ts, zone) == (moment.hour, moment.weekday(), day), (zone, ts)
        assert local_hour_weekday(ts, zone) == (moment.hour, moment.weekday()) and local_day(ts, zone) == day
        assert week_start(week_of_day(day)) == datetime.fromordinal(moment.toordinal() - moment.weekday()).date().isoformat()

