"""The product's settings, shared with the API: :mod:`online_models.settings`."""

from online_models.settings import Settings, get_settings, instant_ms

__all__ = ["Settings", "get_settings", "instant_ms"]
