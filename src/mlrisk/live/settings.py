"""The live bot's settings: environment variables with the ``MLRISK_`` prefix, a ``.env`` file,
or keyword overrides (the command line), validated before any network call.

The API key, secret, REST host and timeout are *not* repeated here: they are the existing
:class:`mlrisk.settings.BinanceSettings` (``MLRISK_BINANCE_API_KEY``, ``MLRISK_BINANCE_API_SECRET``,
``MLRISK_BINANCE_BASE_URL``, ``MLRISK_BINANCE_TIMEOUT_S``), held as ``LiveSettings.binance``, so the
fetch stage, the exchange client and the bot read one set of variables that cannot disagree.
Secrets are :class:`pydantic.SecretStr` and never appear in ``repr``/``str``/``model_dump_json`` or
in the one-line errors raised here (:class:`mlrisk.errors.SettingsError`).

Variables (all optional; ``paper`` mode needs no key):

- ``MLRISK_MODE``: ``paper`` (default: the backtest's fills on live candles, no orders sent),
  ``testnet`` (Binance's test exchange, keys needed) or ``live`` (real money: keys and the
  acknowledgement ``MLRISK_I_UNDERSTAND_REAL_MONEY=true`` / ``--i-understand-real-money`` needed).
- ``MLRISK_MARKET``: ``spot`` or ``futures`` (USDT-M); default: futures when the pinned strategy
  shorts or uses leverage, else spot (:meth:`LiveSettings.for_strategy`).
- ``MLRISK_SYMBOL``, ``MLRISK_INTERVAL``: default ``None`` = the pinned model's.
- ``MLRISK_STATE_FILE``: the SQLite state database (default ``live/state.sqlite``).
- ``MLRISK_CLIENT_ID_PREFIX``: the prefix of the bot's client order ids (default ``mlr``).
- Risk limits: ``MLRISK_MAX_POSITION_NOTIONAL`` (quote currency, e.g. USDT; 0 = no limit, which
  ``live`` mode refuses),
  ``MLRISK_MAX_LEVERAGE`` (1 on spot; default the pinned strategy's leverage, which ``live`` mode refuses), ``MLRISK_MAX_DAILY_LOSS`` and ``MLRISK_MAX_DRAWDOWN``
  (fractions of equity, 0.05 = 5 %; equity includes open P&L), ``MLRISK_MAX_ORDERS_PER_MINUTE``,
  ``MLRISK_FLATTEN_ON_BREACH`` (close the position when a loss limit trips, else only reducing
  orders are allowed), ``MLRISK_KILL_SWITCH_FILE`` (when this file exists the bot stops gracefully),
  ``MLRISK_FLATTEN_ON_STOP`` (close the position before stopping).
- Orders whose outcome is unknown: ``MLRISK_RECV_WINDOW_MS`` (the ``recvWindow`` of every signed
  request, default 5000) and ``MLRISK_READ_LAG_MS`` (how long, in ms, the exchange's reads may lag its writes,
  default 15000): such an order is looked for until their sum after it was sent, never resent; a
  differing read (e.g. futures ``positionRisk`` after a fill) is asked again until then before it is trusted.
- The loop: ``MLRISK_LOG_FILE`` (JSON lines, one per candle), ``MLRISK_POLL_DELAY_S`` (seconds after
  a close to poll for the candle), ``MLRISK_POLL_RETRY_S`` (seconds between polls while it is late),
  ``MLRISK_MAX_STALE_S`` (a candle this late stops the bot safely).
- The kline websocket: ``MLRISK_WEBSOCKET`` (true: closed candles from the exchange's kline stream
  as soon as they close, REST polling as the fallback; default false = polling only),
  ``MLRISK_WEBSOCKET_URL`` (the stream base URL; default Binance's for the mode and market, see
  :data:`DEFAULT_WS_HOSTS`; plain ``ws://`` only to a loopback host), ``MLRISK_WEBSOCKET_STALL_S``
  (seconds without any message after which the stream counts as stalled and is reconnected).
- The user data stream (testnet/live): ``MLRISK_USER_STREAM`` (default true: fills, order updates,
  triggered stops and liquidations between closes; REST at each close stays the backstop),
  ``MLRISK_USER_STREAM_URL`` (default Binance's for the mode and market, see
  :data:`DEFAULT_USER_STREAM_URLS`; with ``MLRISK_BINANCE_BASE_URL`` set and this not, the stream is
  off), ``MLRISK_USER_STREAM_KEY_FORM`` (futures: how the listen key goes into the URL).
- Metrics and alerts (docs/operations.md): ``MLRISK_METRICS_PORT`` (a Prometheus endpoint, off by
  default), ``MLRISK_METRICS_HOST`` (loopback only unless ``MLRISK_METRICS_PUBLIC=true``),
  ``MLRISK_ALERT_URLS`` (apprise URLs, secret: environment or ``.env`` only, never a flag),
  ``MLRISK_ALERT_COOLDOWN_S``, ``MLRISK_ALERT_ERRORS``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mlrisk.errors import SettingsError
from mlrisk.settings import BinanceSettings
from mlrisk.times import INTERVALS

Mode = Literal["paper", "testnet", "live"]
Market = Literal["spot", "futures"]

#: REST hosts by (mode, market) when ``MLRISK_BINANCE_BASE_URL`` is not set; spot calls go to
#: ``{base}/api``, futures to ``{base}/fapi`` (the convention of ``mlrisk.settings``).
DEFAULT_HOSTS: dict[tuple[str, str], str] = {
    ("paper", "spot"): "https://api.binance.com",          # public market data only
    ("paper", "futures"): "https://fapi.binance.com",
    ("live", "spot"): "https://api.binance.com",
    ("live", "futures"): "https://fapi.binance.com",
    ("testnet", "spot"): "https://testnet.binance.vision",
    ("testnet", "futures"): "https://testnet.binancefuture.com",
}
#: Kline stream hosts by (mode, market) when ``MLRISK_WEBSOCKET_URL`` is not set; the stream is
#: ``{host}/ws/{symbol lower}@kline_{interval}``.
DEFAULT_WS_HOSTS: dict[tuple[str, str], str] = {
    ("paper", "spot"): "wss://stream.binance.com:9443",
    ("paper", "futures"): "wss://fstream.binance.com/market",   # USDT-M's routed /market path (legacy retired 2026-04-23)
    ("live", "spot"): "wss://stream.binance.com:9443",
    ("live", "futures"): "wss://fstream.binance.com/market",
    ("testnet", "spot"): "wss://stream.testnet.binance.vision",
    ("testnet", "futures"): "wss://fstream.binancefuture.com",
}
#: User data stream URLs by (mode, market) when ``MLRISK_USER_STREAM_URL`` is not set. Spot: the
#: WebSocket API (binance-spot-api-docs web-socket-api.md; the testnet's in its "testnet" copy);
#: USDT-M futures: the private host of Binance's 2026 websocket split (``/private``), the listen key
#: added per ``MLRISK_USER_STREAM_KEY_FORM``; the testnet's by analogy with its market host
#: (a check to do on first use, docs/live.md).
DEFAULT_USER_STREAM_URLS: dict[tuple[str, str], str] = {
    ("live", "spot"): "wss://ws-api.binance.com:443/ws-api/v3",
    ("live", "futures"): "wss://fstream.binance.com/private",
    ("testnet", "spot"): "wss://ws-api.testnet.binance.vision/ws-api/v3",
    ("testnet", "futures"): "wss://fstream.binancefuture.com/private",
}
ACK_FLAG = "--i-understand-real-money"
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_PREFIX = re.compile(r"^[A-Za-z0-9]{1,8}$")
#: settings read only from the environment or ``.env``, never a command-line flag: ``binance`` (its own
#: variables) and the alert URLs, whose tokens a flag would show in ``ps`` and the shell's history
ENV_ONLY = frozenset({"binance", "alert_urls"})


class LiveSettings(BaseSettings):
    """Everything the live bot is configured with (see the module docstring for the variables)."""

    model_config = SettingsConfigDict(env_prefix="MLRISK_", env_file=".env", extra="ignore",
                                      validate_default=True)

    binance: BinanceSettings = Field(default_factory=BinanceSettings)
    mode: Mode = Field("paper", description="paper (the backtest's fills on live candles, no orders sent), testnet or live")
    market: Market | None = Field(None, description="spot or futures (USDT-M); default: futures when the pinned "
                                  "strategy shorts or uses leverage (only futures can), else spot")
    i_understand_real_money: bool = Field(False, description="required for mode live")
    symbol: str | None = Field(None, description="default: the pinned model's; must equal it")
    interval: str | None = Field(None, description="default: the pinned model's; must equal it")
    state_file: Path = Field(Path("live/state.sqlite"), description="the SQLite state database")
    client_id_prefix: str = Field("mlr", description="prefix of the bot's client order ids (1-8 letters/digits)")
    max_position_notional: float = Field(0.0, ge=0, allow_inf_nan=False,
                                         description="largest position, quote currency (USDT); 0 = no limit (live refuses 0)")
    max_leverage: float | None = Field(None, ge=1, le=125, allow_inf_nan=False,
                                       description="the strategy's backtest.leverage must not exceed it; 1 on spot; "
                                       "default: the pinned strategy's leverage (mode live needs it set)")
    max_daily_loss: float = Field(0.05, gt=0, le=1, allow_inf_nan=False,
                                  description="fraction of the UTC day's starting equity (open P&L included); "
                                  "then entries stop until the next UTC day")
    max_drawdown: float = Field(0.20, gt=0, le=1, allow_inf_nan=False,
                                description="fraction below the peak equity (open P&L included); then entries stop "
                                "until --reset-halt")
    max_orders_per_minute: int = Field(10, ge=1, le=1200, description="new entries beyond it are cancelled")
    flatten_on_breach: bool = Field(False, description="also close the position when a loss limit trips")
    kill_switch_file: Path = Field(Path("live/STOP"), description="when this file exists the bot stops gracefully")
    flatten_on_stop: bool = Field(False, description="close the position before stopping (kill switch, SIGTERM)")
    log_file: Path | None = Field(None, description="JSON lines, one per candle; default live/bot.jsonl "
                                  "(none for --replay)")
    recv_window_ms: int = Field(5000, ge=1000, le=60000,
                                description="recvWindow (ms) sent with every signed request: an order not executed "
                                "within it of its timestamp never will be (Binance: default 5000, at most 60000, "
                                "'5000 or less' recommended)")
    read_lag_ms: int = Field(15_000, ge=0, le=600_000,
                             description="ms the exchange's reads (order query, order and trade lists, futures "
                             "positionRisk) may trail its writes: an order whose outcome is unknown is looked for "
                             "until recv_window_ms + this after it was sent, then counted as not executed (never "
                             "resent) or, when the holding moved, entries halt; a differing position read is asked "
                             "again until then before the bot trusts it or halts")
    poll_delay_s: float = Field(2.0, ge=0, le=600, allow_inf_nan=False,
                                description="seconds after a candle's close (exchange clock) to poll for it")
    poll_retry_s: float = Field(5.0, gt=0, le=600, allow_inf_nan=False,
                                description="seconds between polls while a candle is late, and the longest single wait")
    max_stale_s: float = Field(300.0, gt=0, le=86400, allow_inf_nan=False,
                               description="stop safely when a candle is this many seconds late (stalled feed)")
    websocket: bool = Field(False, description="closed candles from the exchange's kline websocket as soon as they "
                            "close; REST polling (above) when the stream has not delivered a candle poll_delay_s "
                            "after its close, and for gaps")
    websocket_url: str | None = Field(None, description="the kline stream base URL (wss://; the stream is "
                                      "{url}/ws/<symbol>@kline_<interval>); default Binance's for the mode and market "
                                      "(USDT-M futures: wss://fstream.binance.com/market)")
    websocket_stall_s: float = Field(30.0, gt=0, le=3600, allow_inf_nan=False,
                                     description="seconds without any stream message after which the websocket "
                                     "counts as stalled and is reconnected")
    user_stream: bool = Field(True, description="testnet/live: fills, order updates, triggered stops and liquidations "
                              "from Binance's user data stream between closes (REST at each close stays the backstop); "
                              "ignored in paper mode")
    user_stream_url: str | None = Field(None, description="the user data stream URL (wss://; spot the WebSocket API, "
                                        "futures the private host); default Binance's for the mode and market; "
                                        "with MLRISK_BINANCE_BASE_URL set and this not, the stream is off")
    user_stream_key_form: Literal["query", "path"] = Field(
        "query", description="futures: the listen key as /ws?listenKey=KEY (query, Binance's 2026 notice) or /ws/KEY "
        "(path); check on first use")
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, "
                                     "named in the journal's 'metrics' event); default: off")
    metrics_host: str = Field("127.0.0.1", description="the address the metrics endpoint listens on: a loopback "
                              "address unless metrics_public is true (the endpoint has no authentication and no TLS, "
                              "and tells whoever reaches it the account's equity, position and orders)")
    metrics_public: bool = Field(False, description="allow a metrics_host that is not loopback (e.g. 0.0.0.0 in a "
                                 "container, behind a firewall or a reverse proxy that adds authentication)")
    alert_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="apprise URLs, one per target (tgram://, discord://, slack://, mailto://, "
        "json://, ...), separated by spaces (or a JSON list); secret (they hold tokens): environment or .env only, "
        "never a flag, never logged; default: no alerts")
    alert_cooldown_s: float = Field(300.0, ge=0, le=86400, allow_inf_nan=False,
                                    description="per alert kind: after a message, the next ones of that kind within "
                                    "this many seconds are held back and counted, then sent as one summary "
                                    "('N more ... suppressed'); 0: every message is sent")
    alert_errors: int = Field(3, ge=1, le=1000, description="exchange errors within 300 s that make an alert (a "
                              "single failed request that the client retried is not worth a message)")

    @field_validator("alert_urls", mode="before")
    @classmethod
    def _alert_urls(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                try:
                    v = json.loads(v)
                except ValueError:
                    raise ValueError("is not a JSON list: give the URLs separated by spaces or as a JSON list") from None
            else:
                v = v.split()
        if isinstance(v, list):
            for i, u in enumerate(v, 1):
                text = u.get_secret_value() if isinstance(u, SecretStr) else u
                if not isinstance(text, str) or "://" not in text:
                    raise ValueError(f"URL {i} is not an apprise URL such as tgram://TOKEN/CHAT (the value is not shown)")
        return v

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().upper()
        if not _SYMBOL.match(v):
            raise ValueError("must be a Binance symbol such as BTCUSDT (2-20 letters/digits)")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None and v not in INTERVALS:
            raise ValueError(f"must be one of {', '.join(INTERVALS)}")
        return v

    @field_validator("client_id_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError("must be 1-8 letters or digits")
        return v

    @field_validator("state_file", "kill_switch_file", "log_file")
    @classmethod
    def _path(cls, v: Path | None) -> Path | None:
        if v is not None and str(v).strip() in ("", "."):
            raise ValueError("must be a file path")
        return v

    @field_validator("websocket_url", "user_stream_url")
    @classmethod
    def _ws_url(cls, v: str | None) -> str | None:
        from urllib.parse import urlsplit

        from mlrisk.exchange import _is_loopback

        if v is None:
            return v
        parts = urlsplit(v.strip())
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be a websocket URL such as wss://stream.binance.com:9443")
        if parts.scheme == "ws" and not _is_loopback(parts.hostname):
            raise ValueError("plain ws:// is allowed only to 127.0.0.1/localhost/::1: use wss://")
        return v.strip().rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> "LiveSettings":
        from mlrisk.exchange import _is_loopback

        if self.websocket and self.binance.base_url and not self.websocket_url:
            raise ValueError("MLRISK_BINANCE_BASE_URL is set but MLRISK_WEBSOCKET_URL is not: set the stream host "
                             "too (--websocket-url), so REST and stream candles come from one exchange")
        if self.market == "spot" and self.max_leverage not in (None, 1):
            raise ValueError("max_leverage must be 1 on spot (set MLRISK_MARKET=futures to use leverage)")
        if self.mode in ("testnet", "live") and not self.has_keys:
            raise ValueError(f"mode {self.mode} needs MLRISK_BINANCE_API_KEY and MLRISK_BINANCE_API_SECRET "
                             "(environment or .env); paper mode needs none")
        if self.mode == "live" and not self.i_understand_real_money:
            raise ValueError(f"mode live trades real money: pass {ACK_FLAG} "
                             "(or MLRISK_I_UNDERSTAND_REAL_MONEY=true) to confirm")
        if self.mode == "live" and self.max_position_notional <= 0:
            raise ValueError("mode live needs a position cap: set MLRISK_MAX_POSITION_NOTIONAL (quote currency, "
                             "e.g. 100 for 100 USDT)")
        if self.mode == "live" and self.max_leverage is None:
            raise ValueError("mode live needs a leverage cap: set MLRISK_MAX_LEVERAGE (1 on spot; the pinned "
                             "strategy's backtest.leverage must not exceed it)")
        if not self.metrics_public and not _is_loopback(self.metrics_host):
            raise ValueError(f"metrics_host {self.metrics_host} is not a loopback address: the endpoint has no "
                             "authentication; set MLRISK_METRICS_PUBLIC=true to serve it there anyway")
        if self.state_file.resolve() == self.kill_switch_file.resolve():
            raise ValueError("state_file and kill_switch_file must be different files")
        return self

    @property
    def has_keys(self) -> bool:
        """True when both the API key and the secret are set and non-empty."""
        k, s = self.binance.api_key, self.binance.api_secret
        return bool(k and k.get_secret_value().strip() and s and s.get_secret_value().strip())

    @property
    def sends_orders(self) -> bool:
        """True in ``testnet`` and ``live`` mode; ``paper`` mode only simulates fills."""
        return self.mode != "paper"

    @property
    def base_url(self) -> str:
        """The REST host: ``MLRISK_BINANCE_BASE_URL`` if set, else Binance's for the mode and market
        (spot until :meth:`for_strategy` has resolved the market)."""
        return (self.binance.base_url or DEFAULT_HOSTS[(self.mode, self.market or "spot")]).rstrip("/")

    def exchange_settings(self) -> BinanceSettings:
        """The exchange client's settings with the REST host of :attr:`base_url` (so testnet mode talks
        to Binance's testnet even when ``MLRISK_BINANCE_BASE_URL`` is not set)."""
        return self.binance.model_copy(update={"base_url": self.base_url})

    def for_strategy(self, bp: Any) -> "LiveSettings":
        """These settings with the defaults that depend on the pinned strategy (``bp``: the
        backtest params) filled in: ``market`` futures when it shorts or uses leverage, else spot;
        ``max_leverage`` its leverage (1 on spot). Raises :class:`~mlrisk.errors.SettingsError` (one
        line naming the setting and the fix) when the strategy cannot run under them."""
        from mlrisk.live.risk import market_for

        market, cap = market_for(bp, self.market, self.max_leverage)
        return self.model_copy(update={"market": market, "max_leverage": cap})

    @property
    def uds_url(self) -> str | None:
        """The user data stream URL, or None when the stream is off: paper mode, ``MLRISK_USER_STREAM``
        false, or another REST host (``MLRISK_BINANCE_BASE_URL``) without ``MLRISK_USER_STREAM_URL``
        (never Binance's stream beside another exchange's REST)."""
        if not (self.user_stream and self.sends_orders):
            return None
        if self.user_stream_url:
            return self.user_stream_url
        if self.binance.base_url:
            return None
        return DEFAULT_USER_STREAM_URLS[(self.mode, self.market or "spot")]

    @property
    def ws_url(self) -> str:
        """The kline stream host: ``MLRISK_WEBSOCKET_URL`` if set, else Binance's for the mode and market."""
        return self.websocket_url or DEFAULT_WS_HOSTS[(self.mode, self.market or "spot")]


def _one_line(e: ValidationError, within: str = "") -> str:
    """A ValidationError as one line naming each field, its variable and the problem; never
    echoes an input value (an input may be a secret)."""
    parts = []
    for err in e.errors(include_input=False, include_url=False):
        loc = ".".join(str(x) for x in ((within,) if within else ()) + tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        var = f"MLRISK_{loc.upper().replace('.', '_')}" if loc else ""
        parts.append(f"{loc} ({var}): {msg}" if loc else msg)
    return "live settings: " + "; ".join(parts)


def load_live_settings(env_file: str | Path | None = ".env", **overrides: Any) -> LiveSettings:
    """Read and validate the settings: ``overrides`` (command-line values; ``None`` = not given)
    win over environment variables, which win over ``env_file``. Raises
    :class:`~mlrisk.errors.SettingsError` with one line naming every problem; makes no network call."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        if "binance" not in given:
            given["binance"] = BinanceSettings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as e:
        raise SettingsError(_one_line(e, "binance")) from None
    try:
        return LiveSettings(_env_file=env_file, **given)  # type: ignore[call-arg]
    except ValidationError as e:
        raise SettingsError(_one_line(e)) from None
