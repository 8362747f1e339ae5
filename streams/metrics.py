"""Prometheus metrics of the stream worker."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter("portraits_events_processed_total", "Events folded into portraits")
EVENTS_REJECTED = Counter("portraits_events_rejected_total", "Records sent to the dead-letter topic", ["reason"])
EVENTS_DUPLICATE = Counter("portraits_events_duplicate_total", "Redelivered events ignored by event_id")
PROFILES_PROCESSED = Counter("portraits_profiles_processed_total", "Profile records applied")
PORTRAITS_PUBLISHED = Counter("portraits_published_total", "Portraits published to the portraits topic")
ITEM_PORTRAITS_PUBLISHED = Counter(
    "portraits_item_portraits_published_total", "Item and category portraits published to the item-portraits topic"
)
ITEM_FACTS_APPLIED = Counter("portraits_item_facts_applied_total", "Item facts folded into item and category states")
ITEM_FACTS_DUPLICATE = Counter(
    "portraits_item_facts_duplicate_total", "Item facts from a source position already folded in (sent again), ignored"
)
ITEM_KEYS_EXPIRED = Counter("portraits_item_keys_expired_total", "Items and categories forgotten after the retention in event time")
WATERMARK_DELAY = Gauge(
    "portraits_watermark_delay_seconds", "Wall clock minus stream time, per partition", ["partition"]
)
STREAM_TIME_AHEAD = Gauge(
    "portraits_stream_time_ahead_seconds", "Stream time minus wall clock, per partition (0 unless stream time runs ahead)", ["partition"]
)
ALERTS_FIRED = Counter("portraits_alerts_fired_total", "Churn alerts sent")
USERS_SWEPT = Counter("portraits_users_swept_total", "Silent users re-scored by the watermark sweep")
TRAINING_SAMPLES = Counter("portraits_training_samples_total", "Samples learned by the trainer")
RECORDS_SKIPPED = Counter(
    "portraits_records_skipped_total", "Records already in the state restored after a crash or a partition move"
)
USERS_ERASED = Counter("portraits_users_erased_total", "Erasure requests carried out (users forgotten on request)")
RECORDS_FENCED = Counter(
    "portraits_records_fenced_total", "Events and profiles of an erased user stamped before the erasure, dropped"
)
USERS_EXPIRED = Counter("portraits_users_expired_total", "Users forgotten after the retention in event time")
PARTITIONS_UNSTALLED = Counter(
    "portraits_partitions_unstalled_total", "Assigned partitions read again after they stopped delivering records"
)
HOLES_REREAD = Counter(
    "portraits_holes_reread_total",
    "Times a record arrived past one never applied (Faust skipped some): the missing ones were read from the broker and applied first",
)
UNREAD_RECORDS = Gauge(
    "portraits_unread_records",
    "Input records of the engines' partitions not applied yet, as far as the consumer knows, by publication topic",
    ["publishes"],
)
CATCHING_UP = Gauge(
    "portraits_catching_up",
    "1 while the unread records would take the worker more than PORTRAITS_PUBLISH_BEHIND_SECONDS at its recent rate "
    "(publications and timed flushes slow down), else 0, by publication topic",
    ["publishes"],
)
APPLIED_OFFSET = Gauge(
    "portraits_applied_offset",
    "Offset of the last record applied to the state, by input topic and partition (Faust's committed offset may lag it)",
    ["topic", "partition"],
)
CHECKS = Counter("portraits_checks_total", "Looks at a user: after an event that needs one, or at a scheduled check")
CLOCK_CLAMPED = Counter(
    "portraits_clock_clamped_total",
    "Events stamped ahead of the wall clock: folded in with their own time, their partition's stream time held at the wall clock",
)
CLOCK_CLAMPED_AHEAD = Counter(
    "portraits_clock_clamped_ahead_seconds_total",
    "How far ahead of the wall clock those events were, summed (divided by portraits_clock_clamped_total: the mean)",
)
BASKETS_CLOSED = Counter(
    "portraits_baskets_closed_total", "Baskets (orders, or a day's purchases without an order id) closed and sent to the aggregator"
)
BASKETS_COUNTED = Counter(
    "portraits_baskets_counted_total",
    "Basket records read by the association aggregator, by outcome: added, duplicate (a basket sent again), too_old (its day was out of the window)",
    ["outcome"],
)
CROSSING_REPLANS = Counter(
    "portraits_crossing_replans_total",
    "Snapshots with a new purchase model whose alert crossings were solved again for the planned users",
)
CHECKS_BROUGHT_FORWARD = Counter(
    "portraits_checks_brought_forward_total", "Checks of silent users a new purchase model brought forward (their alert crossing came earlier)"
)
DEAD_LETTERS_TRUNCATED = Counter(
    "portraits_dead_letters_truncated_total", "Dead letters cut to fit the dead-letter topic (the source headers point at the whole record)"
)
GC_PAUSE = Histogram(
    "portraits_gc_pause_seconds",
    "Pauses of Python's garbage collector in the worker, by generation collected (2: a full collection)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
#: every how many records one's age is observed (RECORD_AGE)
RECORD_AGE_EVERY = 16
RECORD_AGE = Histogram(
    "portraits_record_age_seconds",
    f"Wall seconds from an input record's Kafka timestamp to its application, every {RECORD_AGE_EVERY}th record, "
    "by the engines' output topic",
    ["engines"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)
PUBLICATION_WAIT = Histogram(
    "portraits_publication_wait_seconds",
    "Wall seconds from the first change a partition's publication covers to that publication's hand-over to Kafka "
    "(the longest a changed state of the partition waited to be published), by the engines' output topic",
    ["engines"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
FLUSH_SECONDS = Histogram(
    "portraits_flush_seconds",
    "Seconds a flush holds its engines' turn (records of those engines wait meanwhile), by the engines' output topic",
    ["engines"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

#: the engines' counts (online_models.processor, online_models.item_processor) and the metric each one adds to
_ENGINE_COUNTS = {
    "clock_clamped": CLOCK_CLAMPED,
    "dead_letters_truncated": DEAD_LETTERS_TRUNCATED,
    "events_processed": EVENTS_PROCESSED,
    "events_duplicate": EVENTS_DUPLICATE,
    "profiles_processed": PROFILES_PROCESSED,
    "alerts_fired": ALERTS_FIRED,
    "users_swept": USERS_SWEPT,
    "users_erased": USERS_ERASED,
    "records_fenced": RECORDS_FENCED,
    "users_expired": USERS_EXPIRED,
    "records_skipped": RECORDS_SKIPPED,
    "checks": CHECKS,
    "item_facts_applied": ITEM_FACTS_APPLIED,
    "item_facts_duplicate": ITEM_FACTS_DUPLICATE,
    "item_keys_expired": ITEM_KEYS_EXPIRED,
    "baskets_closed": BASKETS_CLOSED,
    "replans": CROSSING_REPLANS,
    "checks_brought_forward": CHECKS_BROUGHT_FORWARD,
}


def add_engine_counts(counts) -> None:
    """Add a partition engine's counts to the metrics and clear them."""
    for name, n in counts.items():
        if name.startswith("rejected:"):
            EVENTS_REJECTED.labels(name.partition(":")[2]).inc(n)
        elif name == "clock_clamped_ms":
            CLOCK_CLAMPED_AHEAD.inc(n / 1000)
        else:
            _ENGINE_COUNTS[name].inc(n)
    counts.clear()
