"""Secrets and endpoints from environment variables or ``.env`` (pydantic-settings).

Secrets are :class:`pydantic.SecretStr`: their ``repr``/``str`` print ``**********``, so they
cannot leak through logs or reports by accident. Variables (all optional for market data):

- ``MLRISK_BINANCE_API_KEY`` / ``MLRISK_BINANCE_API_SECRET``: only the live bot needs them.
- ``MLRISK_BINANCE_BASE_URL``: override the REST host (tests point it at a local fake
  server, e.g. ``http://127.0.0.1:8765``); spot calls go to ``{base}/api``, futures to ``{base}/fapi``.
- ``MLRISK_BINANCE_TIMEOUT_S``: HTTP timeout per request, seconds.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BinanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLRISK_BINANCE_", env_file=".env", extra="ignore")

    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    base_url: str | None = None
    timeout_s: float = 10.0
