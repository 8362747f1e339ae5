"""Configuration, read from ``PORTRAITS_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from online_models.portrait import PortraitConfig


class Settings(BaseSettings):
    """Every setting of the worker, the API and the tools; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="PORTRAITS_", extra="ignore")

    kafka: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated")
    topic_prefix: str = Field("", description="Prefix of every topic name, so deployments can share a broker")
    app_id: str = Field("portraits", description="Faust app id, also the worker's consumer group")
    data_dir: Path = Field(Path("data"), description="Where the worker's RocksDB tables and the API store live")
    partitions: int = Field(8, ge=1, le=1024, description="Partitions of the keyed topics")
    api_host: str = Field("127.0.0.1", description="Address the API binds")
    api_port: int = Field(8000, description="Port of the HTTP API")
    worker_web_port: int = Field(6066, description="Port of the worker's own web server (metrics)")
    timezone: str = Field("UTC", description="Shop time zone for active hours and weekdays")
    lateness_seconds: float = Field(300.0, ge=0, le=86_400, description="Allowed event-time lateness")
    max_future_seconds: float = Field(86_400.0, ge=0, description="How far ahead of the wall clock an event may be")
    publish_interval: float = Field(0.5, gt=0, description="Seconds between publications of changed portraits")
    category_half_life_days: float = Field(30.0, gt=0, description="Half-life of category interest")
    cart_timeout_hours: float = Field(24.0, gt=0, description="A cart with no payment within this time is abandoned")

    def topic(self, name: str) -> str:
        """Full name of one of the product's topics."""
        return f"{self.topic_prefix}{name}"

    def portrait_config(self) -> PortraitConfig:
        """The pure core's configuration."""
        return PortraitConfig(
            timezone=self.timezone,
            category_half_life_days=self.category_half_life_days,
            cart_timeout_ms=int(self.cart_timeout_hours * 3_600_000),
        )

    @property
    def bootstrap_servers(self) -> list[str]:
        """Bootstrap servers as a list."""
        return [s.strip() for s in self.kafka.split(",") if s.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
