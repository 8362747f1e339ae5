"""Configuration, read from ``PORTRAITS_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from online_models.alerts import AlertPolicy
from online_models.associations import AssociationConfig
from online_models.clock import DAY_MS
from online_models.events import MAX_TS_MS, to_epoch_ms
from online_models.item_portrait import ItemConfig
from online_models.item_processor import ItemEngineConfig
from online_models.partition_engine import Flushing
from online_models.portrait import PortraitConfig
from online_models.processor import EngineConfig
from online_models.rfm import LayerConfig
from online_models.watch import WatchConfig


class ApiSettings(BaseSettings):
    """The API's own settings (``PORTRAITS_API_*``), a part of :class:`Settings`."""

    model_config = SettingsConfigDict(env_prefix="PORTRAITS_", extra="ignore")

    api_tokens: SecretStr | None = Field(None, description="Bearer tokens and roles: token1:admin,token2:reader")
    api_max_events: int = Field(1000, ge=1, le=100_000, description="Most events in one POST /v1/events")
    api_max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body of any endpoint, in bytes (413 beyond; checked after the token)"
    )
    api_query_processes: int = Field(
        2, ge=0, le=64, description="Processes audience queries, exports' selections and audiences' overviews run in (0: threads of the API process)"
    )
    api_query_concurrency: int = Field(
        4, ge=1, le=256, description="Audience and overview queries run at once; one more is answered 503 with Retry-After"
    )
    api_query_timeout_seconds: float = Field(
        10.0, gt=0, description="Deadline of an audience or overview query (and of an export's selection); 504 past it"
    )
    api_alert_queue: int = Field(256, ge=1, le=100_000, description="Alerts queued per live subscriber")
    api_streams_per_token: int = Field(
        4, ge=1, description="Live alert streams open at once per token; one more is answered 429 with Retry-After"
    )
    api_streams_total: int = Field(
        256, ge=1, description="Live alert streams open at once in this process; one more is answered 503 with Retry-After"
    )
    api_alert_retention_days: float = Field(
        90.0, gt=0, description="Alerts older (event time) than this before the newest stored alert are pruned from the store"
    )
    api_cache_mb: int = Field(256, ge=8, description="RocksDB block cache of the API's store, in MiB")
    api_fast_lookups: bool = Field(
        True, description="Answer plain portrait lookups before FastAPI's routing (api/fastpath.py); false: all in FastAPI"
    )


class Settings(ApiSettings):
    """Every setting of the worker, the API and the tools; see the README's table."""

    kafka: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated")
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects: PLAINTEXT, or SASL over TLS (SASL_SSL)"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_SSL"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user of this process (SASL_SSL only)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password of this process (SASL_SSL only)")
    kafka_ca_file: Path | None = Field(
        None, description="PEM file of the CA(s) the broker's certificate is checked against (SASL_SSL; default: the system's)"
    )
    topic_prefix: str = Field("", description="Prefix of every topic name, so deployments can share a broker")
    app_id: str = Field("portraits", description="Faust app id, also the worker's consumer group")
    data_dir: Path = Field(Path("data"), description="Where the worker's RocksDB tables and the API store live")
    partitions: int = Field(8, ge=1, le=1024, description="Partitions of the keyed topics")
    api_host: str = Field("127.0.0.1", description="Address the API binds")
    api_port: int = Field(8000, description="Port of the HTTP API")
    worker_web_port: int = Field(6066, description="Port of the worker's own web server (metrics)")
    timezone: str = Field("UTC", description="Shop time zone for active hours, weekdays and purchase days")
    lateness_seconds: float = Field(300.0, ge=0, le=86_400, description="Allowed event-time lateness")
    max_future_seconds: float = Field(86_400.0, ge=0, description="How far ahead of the wall clock an event may be")
    earliest_event_time: str | int = Field(
        "2000-01-01T00:00:00Z",
        description="Events stamped before this instant are invalid: ISO-8601 with an offset, or epoch milliseconds (1970 on)",
    )
    publish_interval: float = Field(0.05, gt=0, description="Seconds between publications of changed portraits")
    publish_interval_behind: float = Field(
        5.0,
        ge=0,
        description="Seconds between publications while a worker catches up (its unread input records would take it "
        "more than publish_behind_seconds): the states changed meanwhile are published once; 0: publish_interval throughout",
    )
    publish_interval_behind_max: float = Field(
        30.0,
        ge=0,
        description="The most seconds between publications while a worker catches up: between publish_interval_behind and "
        "this, the interval is the seconds of work its unread input records mean, so a portrait already that far behind "
        "is not rendered again and again",
    )
    publish_behind_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds of unread input records (at the worker's recent rate) above which it counts as catching up",
    )
    item_portraits: bool = Field(
        True, description="Send counted events on to the item engines, which keep the item and category portraits (item-facts topic)"
    )
    item_publish_interval: float = Field(
        1.0, gt=0, description="Seconds between publications of changed item and category portraits"
    )
    category_half_life_days: float = Field(30.0, gt=0, description="Half-life of category interest")
    cart_timeout_hours: float = Field(24.0, gt=0, description="A cart with no payment within this time is abandoned")
    sentiment_window_days: float = Field(
        30.0, gt=0, description="Days a user's negative reviews count as recent (portrait, tags, churn reasons)"
    )

    sample_period_days: float = Field(7.0, gt=0, description="Each user feeds the models once per period")
    churn_horizon_days: float = Field(30.0, gt=0, description="Churn label: no purchase within this horizon")
    snapshot_interval: float = Field(5.0, gt=0, description="Seconds between model snapshots of the trainer")
    benchmark_aov: float = Field(150.0, gt=0, description="The shop's benchmark order value for value layers")
    clv_horizon_days: int = Field(365, gt=0, le=3650, description="Days of purchases a customer's lifetime value counts")
    clv_annual_discount_rate: float = Field(0.10, ge=0, le=1, description="Yearly rate future purchases are discounted at in CLV")
    association_window_days: int = Field(
        30, ge=1, le=400, description="Days of baskets (shop calendar days, up to the newest basket's) the co-purchase counts cover"
    )
    association_order_gap_minutes: float = Field(
        60.0, ge=0, le=7 * 24 * 60,
        description="Payments of one order_id further apart are separate baskets; an order's basket closes once the watermark is this far past its last payment",
    )
    association_snapshot_interval: float = Field(
        30.0, gt=0, description="Seconds between the association aggregator's snapshots (each one re-scores next_categories in the API)"
    )
    association_category_sketch_lg_k: int = Field(
        12, ge=3, le=21, description="log2 of the category sketches' size: 0.75 x 2^k categories or category pairs a day are counted exactly"
    )
    association_item_sketch_lg_k: int = Field(
        10, ge=3, le=21, description="log2 of the item sketches' size: 0.75 x 2^k items or item pairs a day are counted exactly, beyond that within the error bound"
    )
    association_min_pair_baskets: int = Field(
        3, ge=1, description="A category pair bought together in fewer baskets of the window is no ground for next_categories"
    )
    association_next_categories: int = Field(3, ge=1, le=20, description="Next categories suggested per user")
    alert_threshold: float = Field(0.7, gt=0, le=1, description="Lapse risk (1 - P(alive) under MBG/NBD) at which an alert fires")
    alert_rearm_below: float = Field(0.5, ge=0, le=1, description="Lapse risk under which a fired user who came back re-arms")
    alert_cooldown_days: float = Field(14.0, ge=0, description="Minimum event-time days between two alerts of a user")
    alert_layers: str = Field("high_value,potential", description="Value layers (at last purchase) worth an alert")
    alert_webhook: str | None = Field(None, description="Optional URL that receives every alert (POST, JSON)")
    tag_rules: Path | None = Field(None, description="Tag rules file (YAML); default: the shipped rules")
    live_idle_seconds: float = Field(
        0.0, ge=0, description="Live mode: a partition idle this long follows the wall clock (0: off, for replays)"
    )
    sweep_batch: int = Field(500, gt=0, description="Most users re-scored per processed record")
    retention_days: float = Field(
        400.0, ge=0, description="A user idle this long (event time) is forgotten everywhere (0: keep forever)"
    )
    train_models: bool = Field(
        True, description="Learn the models from the stream; off: score with the snapshot on the models topic as it is"
    )
    progress_every: int = Field(
        10_000, gt=0, description="Records between two progress records of a partition (crash recovery replays at most this many)"
    )
    flush_interval: float = Field(
        1.0, gt=0, description="Most seconds a partition's changed states wait in memory before they are written "
        "(while the worker catches up, a partition records keep coming for flushes every progress_every records instead, "
        "or after flush_interval_behind seconds)"
    )
    flush_interval_behind: float = Field(
        30.0, gt=0, description="While the worker catches up, the most seconds between two writes of a busy partition's "
        "changed states and progress (Kafka Streams' commit interval): a crash reads no more than that much work again"
    )
    state_cache_users: int = Field(
        20_000, ge=0, description="Live user states a partition keeps in memory beyond the changed ones"
    )
    session_timeout_seconds: float = Field(
        30.0, gt=0, description="Kafka consumer session timeout: how soon a dead worker's partitions move"
    )
    standby_replicas: int = Field(1, ge=0, description="Standby copies of each table partition kept by other workers")
    gc_thaw_interval: float = Field(
        600.0, ge=0, description="The worker freezes what survives each full garbage collection, so the next one walks only "
        "what came since, and thaws it every this many seconds, so cycles among old objects are still collected "
        "(0: thaw after every full collection, Python's own behaviour)"
    )
    worker_loop: Literal["uvloop", "aio"] = Field(
        "uvloop", description="Event loop of the worker: uvloop, or asyncio's own (aio)"
    )
    pseudonym_key: SecretStr | None = Field(
        None, description="Secret for pseudonymous user ids (HMAC-SHA256); unset: ids are kept as sent"
    )

    @field_validator("pseudonym_key")
    @classmethod
    def _pseudonym_key_is_a_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "PORTRAITS_PSEUDONYM_KEY is set but empty: give it the secret (the same to the worker and the API), "
                "or unset it to keep user ids as sent"
            )
        return value

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> "Settings":
        if self.kafka_security_protocol == "SASL_SSL":
            missing = [
                name
                for name, value in (("USERNAME", self.kafka_sasl_username), ("PASSWORD", self.kafka_sasl_password))
                if value is None or not (value if isinstance(value, str) else value.get_secret_value()).strip()
            ]
            if missing:
                raise ValueError(
                    "PORTRAITS_KAFKA_SECURITY_PROTOCOL is SASL_SSL but "
                    + " and ".join(f"PORTRAITS_KAFKA_SASL_{name}" for name in missing)
                    + " is not set"
                )
            if self.kafka_ca_file is not None and not self.kafka_ca_file.is_file():
                raise ValueError(f"PORTRAITS_KAFKA_CA_FILE {self.kafka_ca_file} is not a file")
        elif self.kafka_sasl_username is not None or self.kafka_sasl_password is not None or self.kafka_ca_file is not None:
            # credentials given for a connection that would not use them: never fall back to plaintext unnoticed
            raise ValueError(
                "PORTRAITS_KAFKA_SASL_USERNAME, _PASSWORD or PORTRAITS_KAFKA_CA_FILE is set but "
                "PORTRAITS_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: set it to SASL_SSL, or unset them"
            )
        return self

    @model_validator(mode="after")
    def _publication_intervals_are_ordered(self) -> "Settings":
        if self.publish_interval_behind_max < self.publish_interval_behind:
            raise ValueError(
                f"PORTRAITS_PUBLISH_INTERVAL_BEHIND_MAX ({self.publish_interval_behind_max:g}) is below "
                f"PORTRAITS_PUBLISH_INTERVAL_BEHIND ({self.publish_interval_behind:g}): the most seconds between "
                "publications while catching up must be at least the least"
            )
        return self

    @field_validator("earliest_event_time")
    @classmethod
    def _earliest_is_an_instant(cls, value: str | int) -> str | int:
        instant_ms(value)
        return value

    def topic(self, name: str) -> str:
        """Full name of one of the product's topics."""
        return f"{self.topic_prefix}{name}"

    def portrait_config(self) -> PortraitConfig:
        """The pure core's configuration."""
        return PortraitConfig(
            timezone=self.timezone,
            category_half_life_days=self.category_half_life_days,
            cart_timeout_ms=int(self.cart_timeout_hours * 3_600_000),
            sentiment_window_days=self.sentiment_window_days,
            order_gap_ms=int(self.association_order_gap_minutes * 60_000),
        )

    def watch_config(self) -> WatchConfig:
        """Sampling, labels and alerts of the per-user watch."""
        return WatchConfig(
            portrait=self.portrait_config(),
            sample_period_ms=int(self.sample_period_days * DAY_MS),
            label_horizon_ms=int(self.churn_horizon_days * DAY_MS),
            alerts=AlertPolicy(
                threshold=self.alert_threshold,
                rearm_below=self.alert_rearm_below,
                cooldown_ms=int(self.alert_cooldown_days * DAY_MS),
                layers=frozenset(x.strip() for x in self.alert_layers.split(",") if x.strip()),
            ),
        )

    def engine_config(self) -> EngineConfig:
        """What each partition's engine needs: watch, event time, retention, flushes, cache."""
        return EngineConfig(
            watch=self.watch_config(),
            lateness_ms=int(self.lateness_seconds * 1000),
            max_future_ms=int(self.max_future_seconds * 1000),
            earliest_event_ms=instant_ms(self.earliest_event_time),
            retention_ms=int(self.retention_days * DAY_MS),
            progress_every=self.progress_every,
            sweep_batch=self.sweep_batch,
            live_idle_ms=int(self.live_idle_seconds * 1000),
            pseudonym_key=self.pseudonym_secret(),
            cache_users=self.state_cache_users,
            item_facts=self.item_portraits,
        )

    def item_engine_config(self) -> ItemEngineConfig:
        """What each item partition's engine needs: the shop's time zone, flushes, retention."""
        return ItemEngineConfig(
            item=ItemConfig(timezone=self.timezone),
            flushing=Flushing(
                lateness_ms=int(self.lateness_seconds * 1000),
                progress_every=self.progress_every,
                cache_size=self.state_cache_users,
            ),
            retention_ms=int(self.retention_days * DAY_MS),
        )

    def association_config(self) -> AssociationConfig:
        """The association aggregator's configuration (its summaries carry what the API reads)."""
        return AssociationConfig(
            window_days=self.association_window_days,
            timezone=self.timezone,
            category_lg_k=self.association_category_sketch_lg_k,
            item_lg_k=self.association_item_sketch_lg_k,
            min_pair_baskets=self.association_min_pair_baskets,
            next_categories=self.association_next_categories,
        )

    def layer_config(self) -> LayerConfig:
        """Value-layer thresholds."""
        return LayerConfig(benchmark_aov=self.benchmark_aov)

    def clv_config(self) -> dict[str, float]:
        """The CLV fields of :class:`online_models.population.PopulationConfig`."""
        return {"clv_horizon_days": self.clv_horizon_days, "clv_annual_discount_rate": self.clv_annual_discount_rate}

    def pseudonym_secret(self) -> bytes | None:
        """The pseudonym key as bytes, None when pseudonymisation is off."""
        if self.pseudonym_key is None:
            return None
        return self.pseudonym_key.get_secret_value().encode()

    @property
    def bootstrap_servers(self) -> list[str]:
        """Bootstrap servers as a list."""
        return [s.strip() for s in self.kafka.split(",") if s.strip()]


def instant_ms(value: str | int) -> int:
    """An instant given as ISO-8601 with an offset or as epoch milliseconds (digits), in epoch milliseconds.

    >>> instant_ms("1997-01-01T00:00:00Z"), instant_ms("852076800000")
    (852076800000, 852076800000)
    """
    if isinstance(value, bool):
        raise ValueError("an instant, not a boolean")
    ms = int(value) if isinstance(value, int) or value.strip().isdigit() else to_epoch_ms(value.strip())
    if not 0 <= ms <= MAX_TS_MS:
        raise ValueError(f"{value!r} is not an instant from 1970 to 2286")
    return ms


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
