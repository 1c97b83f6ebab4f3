"""The risk rules in one place: the limits the step enforces (:class:`RiskLimits`), the loss and
drawdown counters (:func:`update_risk`), the position cap execution applies to a real entry
(:func:`position_cap_breach`), the market and leverage cap a strategy gets (:func:`market_for`,
used by :meth:`mlrisk.live.settings.LiveSettings.for_strategy`) and which strategies an exchange
market can trade (:func:`check_supported`).

Units: equity in quote currency (USDT), times in epoch ms UTC, losses as fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlrisk.errors import SettingsError
from mlrisk.live.state import RiskState
from mlrisk.times import DAY_MS


@dataclass(frozen=True)
class RiskLimits:
    """The limits the paper broker enforces (see the module docstring)."""

    max_position_notional: float = 0.0
    max_daily_loss: float = 0.05
    max_drawdown: float = 0.20
    max_orders_per_minute: int = 10
    flatten_on_breach: bool = False

    @classmethod
    def from_settings(cls, s: Any) -> "RiskLimits":
        return cls(s.max_position_notional, s.max_daily_loss, s.max_drawdown, s.max_orders_per_minute,
                   s.flatten_on_breach)

    @classmethod
    def none(cls) -> "RiskLimits":
        """No limit at all, like the backtest (``mlrisk live --no-risk-limits``; paper and replay only):
        no position cap, loss and drawdown limits that can never be reached, no orders-per-minute cap."""
        return cls(0.0, math.inf, math.inf, 2**62, False)


def _day(ms: int) -> int:
    return ms // DAY_MS * DAY_MS


def update_risk(risk: RiskState, equity: float, last_equity: float, close_ms: int, limits: RiskLimits) -> RiskState:
    """The risk counters after a close with ``equity`` (marked to market): a new UTC day starts
    from the previous close's equity and lifts a daily-loss halt; the peak follows equity; a limit
    crossed sets the halt (kept, with the first reason, until lifted)."""
    day = _day(close_ms)
    day_start_ms, day_start_eq = risk.day_start_ms, risk.day_start_equity
    halted, reason = risk.halted, risk.halt_reason
    if day_start_ms != day:
        day_start_ms, day_start_eq = day, last_equity
        if halted and reason.startswith("daily_loss"):
            halted, reason = False, ""
    peak = max(risk.peak_equity or last_equity, last_equity, equity)
    if not halted and day_start_eq and (day_start_eq - equity) / day_start_eq >= limits.max_daily_loss:
        halted, reason = True, (f"daily_loss: equity {equity:.2f} is {(day_start_eq - equity) / day_start_eq:.2%} "
                                f"below the day's start {day_start_eq:.2f} (max_daily_loss {limits.max_daily_loss:.2%})")
    if not halted and peak and (peak - equity) / peak >= limits.max_drawdown:
        halted, reason = True, (f"drawdown: equity {equity:.2f} is {(peak - equity) / peak:.2%} below the peak "
                                f"{peak:.2f} (max_drawdown {limits.max_drawdown:.2%})")
    return RiskState(day_start_ms, day_start_eq, peak, halted, reason)


def check_supported(bp: Any, market: str, max_leverage: float = 1.0) -> None:
    """Refuse a strategy the broker for ``market`` cannot trade (one line naming the parameters).
    Spot: long only, leverage 1, market entries, no take-profit/stop/hold (the engine would exit its
    simulated position inside a candle where no real order exists). USDT-M futures
    (:class:`mlrisk.live.execution.futures.FuturesBroker`): both directions, a whole-number leverage up to
    ``max_leverage``, market or limit entries, take-profit/stop (exchange-side algo orders) and hold."""
    problems = []
    if market == "futures":
        if bp.leverage > max_leverage:
            problems.append(f"backtest.leverage {bp.leverage:g} exceeds MLRISK_MAX_LEVERAGE {max_leverage:g}")
        if bp.leverage != int(bp.leverage):
            problems.append(f"backtest.leverage {bp.leverage:g} (Binance futures take a whole number)")
        if problems:
            raise SettingsError("testnet/live futures order sending: " + "; ".join(problems))
        return
    if bp.direction != "long":
        problems.append(f"backtest.direction {bp.direction} (spot is long only)")
    if bp.leverage != 1:
        problems.append(f"backtest.leverage {bp.leverage:g} (spot has none)")
    if bp.entry != "market":
        problems.append("backtest.entry limit (resting limit entries are sent on futures only)")
    for name in ("take_profit", "stop_loss"):
        if getattr(bp, name):
            problems.append(f"backtest.{name} (protective orders are sent on futures only)")
    if bp.hold:
        problems.append("backtest.hold (timed exits are sent on futures only)")
    if problems:
        raise SettingsError("testnet/live spot order sending supports long-only, leverage 1, market entries, no "
                            "take-profit/stop/hold (use --market futures for the rest); not: " + "; ".join(problems))


def position_cap_breach(after: float, cap: float, quote: str) -> str | None:
    """Why an entry must be skipped when the position would be ``after`` (quote currency ``quote``)
    with a ``max_position_notional`` of ``cap`` (0 = no cap); None when it fits."""
    if cap > 0 and after > cap:
        return f"entry skipped: the position would be {after:.2f} {quote}, above max_position_notional {cap:.2f}"
    return None


def market_for(bp: Any, market: str | None, max_leverage: float | None) -> tuple[str, float]:
    """(market, leverage cap) for the strategy ``bp`` (the backtest params) under the settings'
    ``market`` and ``max_leverage`` (None: not set): futures when it shorts or uses leverage, else
    spot; the cap defaults to its leverage (1 on spot). Raises :class:`~mlrisk.errors.SettingsError`
    (one line naming the setting and the fix) when the strategy cannot run under them."""
    market = market or ("futures" if bp.direction != "long" or bp.leverage > 1 else "spot")
    cap = max_leverage if max_leverage is not None else (1.0 if market == "spot" else float(bp.leverage))
    if market == "spot" and bp.direction != "long":
        raise SettingsError(f"backtest.direction is {bp.direction} but spot cannot short: set MLRISK_MARKET=futures "
                            "(--market futures) or backtest.direction: long")
    if market == "spot" and bp.leverage > 1:
        raise SettingsError(f"backtest.leverage is {bp.leverage:g} but spot has no leverage: set "
                            "MLRISK_MARKET=futures (--market futures) or backtest.leverage: 1")
    if bp.leverage > cap:
        raise SettingsError(f"backtest.leverage {bp.leverage:g} exceeds MLRISK_MAX_LEVERAGE {cap:g}: raise it "
                            f"(--max-leverage {bp.leverage:g}) or lower backtest.leverage")
    return market, cap
