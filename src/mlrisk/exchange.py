"""The one Binance REST client: python-binance ``Client`` construction, clock offset, and retries.

Every Binance request of the project goes through :meth:`ExchangeClient.call`:

- network errors (connection refused/dropped, timeouts), HTTP 5xx and a non-JSON answer are
  retried with exponential backoff (``backoff_s * 2**attempt``, at most ``max_backoff_s`` seconds);
- HTTP 429 (rate limit) and 418 (IP ban) wait the ``Retry-After`` seconds the exchange asks for,
  unless that is longer than ``MLRISK_BINANCE_MAX_RETRY_AFTER_S``: then the call fails at once and
  says for how long the IP is blocked;
- code -1021 (a signed request's timestamp outside ``recvWindow``) re-measures the clock offset
  and tries again;
- any other refusal (HTTP 4xx) fails at once with Binance's code and message.

A call that must never be sent twice (an order) passes ``idempotent=False``: it is sent once, and
when its fate is unknown (timeout, dropped connection, 5xx, garbled answer) it raises
:class:`ExchangeOutcomeUnknown`: the caller must query the order, never resend it.

Market data is requested without the API key (python-binance sends the key as a header on every
request of a keyed client); only ``signed=True`` clients carry it. Times are epoch milliseconds.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import requests
from pydantic import ValidationError

from mlrisk.errors import ExchangeError
from mlrisk.settings import BinanceSettings
from mlrisk.times import from_ms

log = logging.getLogger(__name__)

Market = Literal["spot", "futures"]
BASE_URL_VAR = "MLRISK_BINANCE_BASE_URL"
MAX_RETRY_AFTER_VAR = "MLRISK_BINANCE_MAX_RETRY_AFTER_S"
UNKNOWN_SYMBOL = -1121
TIMESTAMP_OUTSIDE_RECV_WINDOW = -1021


class UnknownSymbol(ExchangeError):
    """Binance answered -1121 "Invalid symbol": the market has no such symbol (e.g. a perpetual-only
    symbol such as 1000PEPEUSDT on spot)."""


class ExchangeOutcomeUnknown(ExchangeError):
    """A non-idempotent request (an order) may or may not have been executed: query it, never resend."""


# --------------------------------------------------------------------------- construction
def load_settings() -> BinanceSettings:
    """``BinanceSettings`` from the environment / ``.env``; a bad value is one line naming the variable."""
    try:
        return BinanceSettings()
    except ValidationError as e:
        err = e.errors()[0]
        var = "MLRISK_BINANCE_" + str(err["loc"][0]).upper() if err["loc"] else "MLRISK_BINANCE_*"
        raise ExchangeError(f"{var}: {err['msg']}: fix the environment variable or .env") from None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(settings: BinanceSettings) -> str | None:
    """``settings.base_url`` without a trailing slash, after checking it: an http(s) URL, and not
    plain ``http://`` to a non-loopback host while an API key is set."""
    if not settings.base_url:
        return None
    parts = urlsplit(settings.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExchangeError(f"{BASE_URL_VAR} must be an http(s) URL such as https://api.binance.com: fix or unset it")
    if parts.scheme == "http" and settings.api_key is not None and not _is_loopback(parts.hostname):
        raise ExchangeError(
            f"{BASE_URL_VAR} is plain http:// to {parts.hostname} while MLRISK_BINANCE_API_KEY is set: "
            f"use https:// (plain http is allowed only to 127.0.0.1/localhost/::1) or unset the key")
    return settings.base_url.rstrip("/")


def make_client(settings: BinanceSettings | None = None, signed: bool = False) -> Any:
    """A python-binance ``Client`` (no network call at construction), pointed at
    ``settings.base_url`` when set (spot ``{base}/api``, futures ``{base}/fapi`` and ``{base}/futures/data``).

    ``signed=False`` (market data): the client holds no key, so no ``X-MBX-APIKEY`` header is sent.
    ``signed=True`` (account and orders): needs ``MLRISK_BINANCE_API_KEY`` and ``_API_SECRET``."""
    from binance.client import Client

    settings = settings or load_settings()
    base = check_base_url(settings)
    key = secret = None
    if signed:
        if settings.api_key is None or settings.api_secret is None:
            raise ExchangeError("signed Binance requests need MLRISK_BINANCE_API_KEY and MLRISK_BINANCE_API_SECRET: set both (environment or .env)")
        key, secret = settings.api_key.get_secret_value(), settings.api_secret.get_secret_value()
    client = Client(api_key=key, api_secret=secret, requests_params={"timeout": settings.timeout_s}, ping=False)
    if base:
        client.API_URL = f"{base}/api"
        client.FUTURES_URL = f"{base}/fapi"
        client.FUTURES_DATA_URL = f"{base}/futures/data"  # openInterestHist
    return client


# --------------------------------------------------------------------------- retries
def _retry_after_s(response: Any) -> float | None:
    """The ``Retry-After`` header in seconds (None when absent or not a number of seconds)."""
    try:
        value = float(response.headers.get("Retry-After"))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if value >= 0 else None


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Failure:
    """A failed attempt that may be retried: what to log now and what to say if it was the last."""

    def __init__(self, kind: str, detail: str, wait_s: float | None = None, status: int = 0) -> None:
        self.kind = kind          # "network", "server", "rate", "garbled"
        self.detail = detail      # short, for the log line
        self.wait_s = wait_s      # the exchange's Retry-After (s), if it gave one
        self.status = status      # HTTP status, 0 for network errors

    @property
    def blocked(self) -> str:
        """For 429/418: what the exchange did to this IP."""
        return f"{'banned' if self.status == 418 else 'rate-limited'} this IP (HTTP {self.status})"


class ExchangeClient:
    """python-binance behind one retry policy. ``sleep`` is injectable so tests never wait.

    ``market`` picks the server-time endpoint (spot ``/api/v3/time`` or futures ``/fapi/v1/time``)
    and names the market in messages. ``offset_ms`` is the exchange clock minus the local clock
    (ms), measured by :meth:`server_time_ms` and applied to signed requests' timestamps."""

    def __init__(
        self,
        settings: BinanceSettings | None = None,
        *,
        market: Market = "spot",
        signed: bool = False,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = settings or load_settings()
        self.client = make_client(settings, signed=signed)
        self.market = market
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = settings.max_retry_after_s
        self.sleep = sleep
        self.offset_ms = 0

    # ---------------------------------------------------------------- clock
    def server_time_ms(self) -> int:
        """The exchange's clock (ms). Also re-measures ``offset_ms`` (server time minus the local
        clock at the request's midpoint) and sets it on the client, so signed requests carry a
        timestamp on the exchange's clock."""
        raw = self.client.futures_time if self.market == "futures" else self.client.get_server_time

        def server_time() -> tuple[int, float]:
            before = time.time() * 1000
            server = int(raw()["serverTime"])
            return server, (before + time.time() * 1000) / 2

        server, local = self.call(server_time)
        self.offset_ms = int(round(server - local))
        self.client.timestamp_offset = self.offset_ms
        return server

    # ---------------------------------------------------------------- calls
    def call(self, method: str | Callable[..., Any], /, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """``method(**kwargs)`` with retries; ``method`` is a python-binance ``Client`` method name
        (``"get_klines"``, ``"create_order"``) or any callable.

        ``idempotent=False`` (orders): sent once; an unknown outcome raises
        :class:`ExchangeOutcomeUnknown`, a refusal (4xx, 429/418) raises :class:`ExchangeError`
        (the request was not executed)."""
        from binance.exceptions import BinanceAPIException, BinanceRequestException

        fn = getattr(self.client, method) if isinstance(method, str) else method
        name = method if isinstance(method, str) else getattr(method, "__name__", "request")
        attempts = self.max_retries + 1 if idempotent else 1
        resynced = False
        attempt = 0
        while True:
            try:
                return fn(**kwargs)
            except BinanceAPIException as e:
                if e.code == TIMESTAMP_OUTSIDE_RECV_WINDOW and not resynced:
                    resynced = True  # rejected, not executed: safe to send again on the corrected clock
                    log.warning("Binance says the request's timestamp is off (code -1021): re-measuring the clock offset")
                    self.server_time_ms()
                    continue
                failure = self._api_failure(e, name, kwargs)
            except BinanceRequestException as e:  # HTTP 2xx whose body is not JSON
                body = str(e.message).removeprefix("Invalid Response: ")
                failure = _Failure("garbled", f"HTTP 200 with a non-JSON body ({_one_line(body, 40)!r})")
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                failure = _Failure("network", type(e).__name__)
            except requests.RequestException as e:
                raise ExchangeError(f"cannot send a request to Binance ({type(e).__name__}): check {BASE_URL_VAR}") from None
            if not idempotent:
                if failure.kind == "rate":
                    raise ExchangeError(f"Binance {failure.blocked} and refused {name}: it was not executed; try again later") from None
                raise ExchangeOutcomeUnknown(
                    f"Binance did not confirm {name} ({failure.detail}): its outcome is unknown; query it before sending anything again") from None
            attempt += 1
            if attempt >= attempts:
                raise ExchangeError(self._give_up_message(failure, attempts)) from None
            asked = failure.wait_s is not None
            wait = failure.wait_s if asked else min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
            log.warning("Binance %s failed (%s): retrying in %.1f s%s (attempt %d of %d)",
                        name, failure.detail, wait, " as Retry-After asks" if asked else "", attempt + 1, attempts)
            self.sleep(wait)

    def _api_failure(self, e: Any, name: str, kwargs: dict[str, Any]) -> _Failure:
        """A retryable failure from an HTTP error answer, or raise the one-line error for a final one."""
        status = int(e.status_code)
        if status in (429, 418):
            retry_after = _retry_after_s(e.response)
            failure = _Failure("rate", f"HTTP {status} {'IP ban' if status == 418 else 'rate limit'}", retry_after, status)
            if retry_after is not None and retry_after > self.max_retry_after_s:
                until = from_ms(int(time.time() * 1000 + retry_after * 1000)).strftime("%Y-%m-%d %H:%M UTC")
                raise ExchangeError(
                    f"Binance {failure.blocked} for {retry_after:.0f} s ({retry_after / 3600:.1f} h), longer than "
                    f"{MAX_RETRY_AFTER_VAR}={self.max_retry_after_s:g}: stop other clients on this IP and try again after {until}") from None
            return failure
        if status >= 500:
            return _Failure("server", f"HTTP {status}", status=status)
        if e.code == UNKNOWN_SYMBOL:
            raise UnknownSymbol(f"Binance does not know symbol {kwargs.get('symbol')!r} ({self.market}): check data.symbol (e.g. BTCUSDT)") from None
        raise ExchangeError(f"Binance refused {name}: HTTP {status}, code {e.code}: {_one_line(e.message)}") from None

    def _give_up_message(self, failure: _Failure, attempts: int) -> str:
        if failure.kind == "rate":
            return f"Binance {failure.blocked} on all {attempts} attempts: stop other clients on this IP, wait a few minutes and try again"
        if failure.kind == "server":
            return f"Binance answered {failure.detail} (server error) on all {attempts} attempts: the exchange is in trouble; try again later"
        if failure.kind == "garbled":
            return (f"Binance answered {failure.detail} on all {attempts} attempts: a captive portal or proxy is in the way "
                    f"(log in to the network) or {BASE_URL_VAR} names the wrong host")
        return f"Binance unreachable after {attempts} attempts ({failure.detail}): check the network (and {BASE_URL_VAR} if set), then try again"
