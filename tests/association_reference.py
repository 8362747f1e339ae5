"""An independent batch computation of baskets and co-purchase figures, for checking the stream.

From the plain event dicts, with no code of the product: the baskets a history holds (one
order's payments, split where two are more than the order gap apart; else one user's
payments of one local day), which of them the final watermark has closed, and over the
baskets of the last ``window_days`` days the counts, support, confidence and lift of every
pair of categories (items), exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, time, timedelta, timezone
from itertools import combinations
from zoneinfo import ZoneInfo

EPOCH_DATE = datetime(1970, 1, 1).date()


def shop_day(ts_ms: int, zone: str) -> int:
    """Days since 1970-01-01 of the local date of ``ts_ms`` in ``zone``."""
    return (datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(ZoneInfo(zone)).date() - EPOCH_DATE).days


def shop_day_start(day: int, zone: str) -> int:
    """Epoch ms of local midnight starting shop day ``day``."""
    moment = datetime.combine(EPOCH_DATE + timedelta(days=day), time(0), tzinfo=ZoneInfo(zone))
    return round(moment.timestamp() * 1000)


def batch_baskets(
    events: list[dict], *, zone: str = "UTC", order_gap_ms: int = 3_600_000, watermark: int | None = None, max_lines: int = 32
) -> list[dict]:
    """Every basket of ``events`` (duplicates by event_id counted once), closed by ``watermark`` when given (an
    instant, or a function of the user id: their partition's): ``{"user", "first", "last", "closes", "categories",
    "items"}`` (sorted distinct names, the ``max_lines`` smallest; ``closes`` the watermark that closes it)."""
    seen, pays = set(), []
    for event in events:
        key = (event["user_id"], event["event_id"])
        if key in seen:
            continue
        seen.add(key)
        if event["type"] == "pay" and (event.get("category") or event.get("item_id")):
            pays.append(event)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for pay in pays:
        if pay.get("order_id") is not None:
            groups[(pay["user_id"], "order", pay["order_id"])].append(pay)
        else:
            groups[(pay["user_id"], "day", shop_day(pay["ts"], zone))].append(pay)
    baskets = []
    for (user, kind, _), group in groups.items():
        group.sort(key=lambda e: e["ts"])
        sessions = [[group[0]]]
        for pay in group[1:]:
            if kind == "order" and pay["ts"] - sessions[-1][-1]["ts"] > order_gap_ms:
                sessions.append([pay])
            else:
                sessions[-1].append(pay)
        for session in sessions:
            first, last = session[0]["ts"], session[-1]["ts"]
            closes = last + order_gap_ms + 1 if kind == "order" else shop_day_start(shop_day(first, zone) + 1, zone)
            if watermark is not None and closes > (watermark(user) if callable(watermark) else watermark):
                continue
            categories = sorted({p["category"] for p in session if p.get("category")})[:max_lines]
            items = sorted({f"{p.get('category') or ''}\x1f{p['item_id']}" for p in session if p.get("item_id")})[:max_lines]
            baskets.append({"user": user, "first": first, "last": last, "closes": closes, "categories": categories, "items": items})
    return baskets


def batch_counts(baskets: list[dict], *, window_days: int, zone: str = "UTC") -> dict:
    """Over the baskets of the window (the last ``window_days`` days up to the newest basket's), for
    categories and items: ``{"baskets": N, "counts": Counter, "pairs": Counter of (a, b) with a < b}``."""
    if not baskets:
        return {"category": {"baskets": 0, "counts": Counter(), "pairs": Counter()}, "item": {"baskets": 0, "counts": Counter(), "pairs": Counter()}}
    last_day = shop_day(max(b["last"] for b in baskets), zone)
    kept = [b for b in baskets if shop_day(b["last"], zone) > last_day - window_days]
    out = {}
    for kind, field in (("category", "categories"), ("item", "items")):
        holding = [b[field] for b in kept if b[field]]
        counts = Counter(name for names in holding for name in set(names))
        pairs = Counter(tuple(sorted(pair)) for names in holding for pair in combinations(sorted(set(names)), 2))
        out[kind] = {"baskets": len(holding), "counts": counts, "pairs": pairs}
    return out


def batch_rules(counts: dict) -> dict[tuple[str, str], dict]:
    """(a, b) -> support, confidence both ways and lift of every pair of one kind of :func:`batch_counts`."""
    total, singles = counts["baskets"], counts["counts"]
    return {
        (a, b): {
            "baskets": n,
            "support": n / total,
            "confidence_ab": n / singles[a],
            "confidence_ba": n / singles[b],
            "lift": (n / total) / ((singles[a] / total) * (singles[b] / total)),
        }
        for (a, b), n in counts["pairs"].items()
    }


def batch_next_categories(top: list[str], counts: dict, *, min_baskets: int, limit: int) -> list[tuple[str, str]]:
    """(category, because) of a user's next categories: for each category outside ``top``, the top category
    with the highest lift among the pairs bought together in at least ``min_baskets`` baskets; lift above 1;
    highest lift first (then more baskets, then name)."""
    rules = batch_rules(counts)
    best = {}
    for mine in top:
        for (a, b), rule in rules.items():
            if rule["baskets"] < min_baskets or mine not in (a, b):
                continue
            other = b if a == mine else a
            lift = round(rule["lift"], 4)
            if other in top or lift <= 1:
                continue
            if other not in best or (lift, rule["baskets"]) > best[other][:2]:
                best[other] = (lift, rule["baskets"], mine)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:limit]
    return [(name, because) for name, (_, _, because) in ranked]


def partition_of(user_id: str, partitions: int) -> int:
    """The partition of the events topic a user's records go to (Kafka's default partitioner: murmur2 of the key)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def closing_users(partitions: int, prefix: str = "closer") -> list[str]:
    """One user id per partition: an event of each, stamped late, moves every partition's watermark past the history."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        user = f"{prefix}-{n}"
        found.setdefault(partition_of(user, partitions), user)
        n += 1
    return [found[p] for p in range(partitions)]


def baskets_closed_by_each_partition(events: list[dict], *, partitions: int, lateness_ms: int, **options) -> list[dict]:
    """The baskets of ``events`` closed by their partition's watermark once every event is applied (the partition's
    newest event time less the lateness: a history in the past, sent in event-time order per user)."""
    last_ts: dict[int, int] = {}
    for event in events:
        partition = partition_of(event["user_id"], partitions)
        last_ts[partition] = max(last_ts.get(partition, event["ts"]), event["ts"])
    return batch_baskets(events, watermark=lambda user: last_ts[partition_of(user, partitions)] - lateness_ms, **options)
