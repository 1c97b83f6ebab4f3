"""Secrets and endpoints from environment variables or ``.env`` (pydantic-settings).

Secrets are :class:`pydantic.SecretStr`: their ``repr``/``str`` print ``**********``, so they
cannot leak through logs or reports by accident. Variables (all optional for market data):

- ``MLRISK_BINANCE_API_KEY`` / ``MLRISK_BINANCE_API_SECRET``: only the live bot needs them;
  market-data requests (klines, server time) are sent without the key.
- ``MLRISK_BINANCE_BASE_URL``: override the REST host (tests point it at a local fake
  server, e.g. ``http://127.0.0.1:8765``); spot calls go to ``{base}/api``, futures to ``{base}/fapi``.
  While a key is set, a plain ``http://`` URL must name a loopback host (127.0.0.0/8, ``localhost``,
  ``::1``): the key is never offered to the network unencrypted.
- ``MLRISK_BINANCE_TIMEOUT_S``: HTTP timeout per request, seconds.
- ``MLRISK_BINANCE_MAX_RETRY_AFTER_S``: the longest ``Retry-After`` (seconds) a request waits out
  on HTTP 429 (rate limit) or 418 (IP ban) before retrying; a longer one fails at once and says
  for how long the exchange blocked the IP.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BinanceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLRISK_BINANCE_", env_file=".env", extra="ignore")

    api_key: SecretStr | None = Field(None, description="API key (secret, never logged); only signed requests use it")
    api_secret: SecretStr | None = Field(None, description="API secret (secret, never logged)")
    base_url: str | None = Field(None, description="another REST host (a testnet, a local fake); spot calls go to "
                                 "{base}/api, futures to {base}/fapi; plain http:// only to a loopback host while a key is set")
    timeout_s: float = Field(10.0, gt=0, description="seconds per HTTP request")
    max_retry_after_s: float = Field(300.0, ge=0, description="longest Retry-After (seconds) waited out on HTTP 429/418; "
                                     "a longer one fails at once")
