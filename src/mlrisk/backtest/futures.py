"""The perpetual-futures inputs of the engine, from data: funding per candle, maintenance brackets,
the lot step and minimum notional of an exchange-info snapshot.

- :func:`funding_per_candle`: Binance's funding settlements (``/fapi/v1/fundingRate``: ``fundingTime``
  in epoch ms with its millisecond jitter, ``fundingRate`` a fraction) -> the rate the engine charges
  at each candle's open (:func:`mlrisk.backtest.engine.advance_market`).
- :func:`brackets_array` / :func:`load_brackets`: Binance's leverage brackets
  (``/fapi/v1/leverageBracket``) -> the engine's tier rows (:data:`mlrisk.strategy.BR_FLOOR` ..).
  A snapshot ships in ``leverage_brackets.json`` beside this module (its source and date inside).
- :func:`lot_filters`: the lot step and minimum notional of a symbol from the exchange-info snapshot
  ``exchange_info.json`` (spot ``/api/v3/exchangeInfo`` and futures ``/fapi/v1/exchangeInfo`` symbol
  entries), read by :class:`mlrisk.exchange_filters.SymbolFilters`, the filter code the live bot uses.
- :func:`perp_inputs`: the backtest params and brackets a perpetual run trades with (the snapshots'
  lot filters and brackets for the symbol), and where each came from; :func:`market_params` is it for
  either market: THE choice the backtest stage and the live bot's replay and paper account all make.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mlrisk.data.derivatives import settlement_hour
from mlrisk.data.point_in_time import same_open
from mlrisk.errors import DataError, ExchangeError
from mlrisk.exchange_filters import symbol_filters
from mlrisk.strategy import BR_CUM, BR_FLOOR, BR_MMR, N_BRACKET_FIELDS

if TYPE_CHECKING:
    from mlrisk.config.backtest import BacktestParams

HERE = Path(__file__).resolve().parent
BRACKETS_SNAPSHOT = HERE / "leverage_brackets.json"
EXCHANGE_INFO_SNAPSHOT = HERE / "exchange_info.json"


def funding_per_candle(open_times_ms: np.ndarray, funding_times_ms: np.ndarray, rates: np.ndarray,
                       interval_ms: int) -> np.ndarray:
    """The funding rate to charge at each candle's open (fractions of the notional; positive: longs pay).

    ``open_times_ms``: the candles' open times (epoch ms, increasing, gaps allowed); ``funding_times_ms``
    and ``rates``: the settlements. Binance charges a settlement on the positions open at its time.
    The rule (no lookahead: a settlement is charged at or after its time):

    - A settlement belongs to its scheduled hour (:func:`mlrisk.data.derivatives.settlement_hour`,
      the data layer's rule: a time less than ``MAX_JITTER_MS``, 60 s, past the hour is that hour's
      settlement, ``08:00:00.023`` -> 08:00; a later time is a :class:`DataError`). At a candle
      opening at that hour it is charged at that open, on the position held into it, before the
      open's fills (Binance charges the positions held at the hour).
    - A settlement later inside a candle (candles longer than the funding interval, e.g. 1d candles and
      settlements at 08:00 and 16:00) is charged at the next candle's open, on the position held into
      it: the engine knows positions only at candle boundaries, and the position held into the next
      open was held through the candle's end. Several settlements charged at one open add up and are
      charged at that open's mark price.
    - A settlement in a gap (no candle holds it) is charged at the first candle after the gap (the
      position could not change in the gap); one before the first candle or after the last candle's
      open (and not charged at it) is dropped.

    Returns float64, one rate per candle, 0 where none is charged."""
    opens = np.asarray(open_times_ms, dtype=np.int64)
    ft = np.asarray(funding_times_ms, dtype=np.int64)
    r = np.asarray(rates, dtype=np.float64)
    if ft.shape != r.shape or ft.ndim != 1:
        raise DataError(f"funding: {ft.shape} times but {r.shape} rates")
    if not np.isfinite(r).all():
        raise DataError("funding: a rate is not a finite number")
    if len(opens) > 1 and (np.diff(opens) <= 0).any():
        raise DataError("funding: candle open times must increase")
    out = np.zeros(len(opens))
    if len(opens) == 0 or len(ft) == 0:
        return out
    due = settlement_hour(ft)
    idx = np.searchsorted(opens, due, side="right") - 1
    inside = idx >= 0
    late = inside & (due > opens[np.maximum(idx, 0)])
    idx = np.where(late, idx + 1, idx)
    keep = inside & (idx < len(opens))
    np.add.at(out, idx[keep], r[keep])
    return out


def market_columns(open_time: pd.Series, funding: pd.DataFrame | None, mark: pd.DataFrame | None,
                   interval_ms: int) -> pd.DataFrame:
    """The perpetual's per-candle inputs of the engine for candles opening at ``open_time`` (UTC), in
    the order given: ``funding_rate`` (:func:`funding_per_candle` of the funding table's
    ``funding_time_raw`` and ``funding_rate``; absent without a table) and ``mark_open``,
    ``mark_high``, ``mark_low`` (the mark candle opening at the same time, NaN where there is none, so
    the engine falls back to the last price there; absent without a table). The one join the backtest
    stage and the live bot's replay and paper account use (tables: :mod:`mlrisk.data.derivatives`)."""
    t = pd.DatetimeIndex(open_time)
    out = pd.DataFrame(index=range(len(t)))
    if funding is not None:
        ms = t.as_unit("ms").asi8
        raw = pd.DatetimeIndex(funding["funding_time_raw"]).as_unit("ms").asi8
        out["funding_rate"] = funding_per_candle(ms, raw, funding["funding_rate"].to_numpy(dtype="float64"), interval_ms)
    if mark is not None:
        m = same_open(t, mark, ["open", "high", "low"], "mark")  # a duplicate open time: DataError
        for c in ("open", "high", "low"):
            out[f"mark_{c}"] = m[c].to_numpy(dtype="float64")
    return out


def brackets_array(brackets: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One symbol's ``brackets`` list of ``/fapi/v1/leverageBracket`` (``notionalFloor``,
    ``maintMarginRatio``, ``cum``; USDT, fraction, USDT) as the engine's tier rows, ascending floor.
    Raises :class:`DataError` when a field is missing or the floors do not start at 0 and increase."""
    try:
        rows = sorted((float(b["notionalFloor"]), float(b["maintMarginRatio"]), float(b["cum"])) for b in brackets)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"leverage brackets: a bracket lacks notionalFloor, maintMarginRatio or cum ({e})") from None
    out = np.array(rows, dtype=np.float64).reshape(-1, N_BRACKET_FIELDS)
    if len(out) == 0 or out[0, BR_FLOOR] != 0 or (np.diff(out[:, BR_FLOOR]) <= 0).any():
        raise DataError("leverage brackets: notionalFloor must start at 0 and increase")
    if ((out[:, BR_MMR] < 0) | (out[:, BR_MMR] >= 1) | (out[:, BR_CUM] < 0)).any():
        raise DataError("leverage brackets: maintMarginRatio must be in [0, 1) and cum >= 0")
    return out


def load_brackets(symbol: str, path: Path = BRACKETS_SNAPSHOT) -> np.ndarray:
    """``symbol``'s maintenance tiers from a brackets file (default: the shipped snapshot; format:
    ``{"leverageBracket": <the /fapi/v1/leverageBracket answer>}``). :class:`DataError` if absent."""
    doc = json.loads(Path(path).read_text())
    for entry in doc.get("leverageBracket", []):
        if entry.get("symbol") == symbol:
            return brackets_array(entry.get("brackets", []))
    raise DataError(f"leverage brackets: {symbol} is not in {path} (it holds "
                    f"{', '.join(e.get('symbol', '?') for e in doc.get('leverageBracket', []))})")


def snapshot_date(path: Path = BRACKETS_SNAPSHOT) -> str:
    """The date of a shipped snapshot (its ``_date``; default: the brackets'), "undated" when it has none."""
    return str(json.loads(Path(path).read_text()).get("_date") or "undated")


def brackets_diff(a: np.ndarray, b: np.ndarray) -> str:
    """The tiers in which two tier tables (:func:`brackets_array` rows) differ, as text ("" when equal to
    1e-12), e.g. "tier 2: floor 50000 vs 60000, mmr 0.005 vs 0.0065, cum 50 vs 350; 8 vs 9 tiers"."""
    names = ("floor", "mmr", "cum")
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        parts = [f"{n} {x[k]:g} vs {y[k]:g}" for k, n in enumerate(names) if abs(x[k] - y[k]) > 1e-12 * max(1.0, abs(x[k]))]
        if parts:
            out.append(f"tier {i + 1}: " + ", ".join(parts))
    if len(a) != len(b):
        out.append(f"{len(a)} vs {len(b)} tiers")
    return "; ".join(out)


def lot_filters(symbol: str, market: Literal["spot", "futures"], market_orders: bool,
                path: Path = EXCHANGE_INFO_SNAPSHOT) -> tuple[float, float]:
    """``(lot_step, min_notional)`` of ``symbol`` on ``market`` from an exchange-info snapshot (default:
    the shipped one), through :class:`mlrisk.exchange_filters.SymbolFilters`: the quantity step of
    LIMIT orders, or of MARKET orders (``market_orders``: LOT_SIZE and MARKET_LOT_SIZE together), in
    base asset units, and the minimum notional in quote currency (0 when the filter does not apply to
    that order type). :class:`DataError` if the snapshot has no such market."""
    doc = json.loads(Path(path).read_text())
    if market not in doc:
        raise DataError(f"exchange info: no {market!r} section in {path}")
    f = symbol_filters(doc[market], symbol)
    applies = not market_orders or f.min_notional_market
    return float(f.quantity_step(market_orders)), float(f.min_notional) if applies else 0.0


def perp_inputs(bp: BacktestParams, symbol: str) -> tuple[BacktestParams, np.ndarray | None, dict[str, Any]]:
    """What a perpetual backtest of ``symbol`` trades with: ``bp`` with ``lot_step`` and ``min_notional``
    **replaced** by the symbol's futures filters in the shipped exchange-info snapshot (for ``bp.entry``'s
    order type; kept as set where the snapshot lacks the symbol), the maintenance brackets of the shipped
    snapshot (None, the flat ``maintenance_margin_rate``, where it lacks the symbol), and where each came
    from: ``{"lot_step": {"value", "from"}, "min_notional": {...}, "brackets_from": ...}`` (for
    ``backtest.json``'s ``sources``; a ``from`` starting with "params" or "backtest." is a fallback). The
    backtest stage uses it, and the live replay must too, to give the backtest's trades."""
    from mlrisk.errors import MlriskError

    try:
        step, min_notional = lot_filters(symbol, "futures", bp.entry == "market")
        where = f"{EXCHANGE_INFO_SNAPSHOT.name} ({snapshot_date(EXCHANGE_INFO_SNAPSHOT)})"
        bp = bp.model_copy(update={"lot_step": step, "min_notional": min_notional})
    except MlriskError:  # the snapshot lacks the symbol (ExchangeError) or the market (DataError)
        where = f"params backtest.lot_step/min_notional ({symbol} is not in {EXCHANGE_INFO_SNAPSHOT.name})"
    try:
        brackets: np.ndarray | None = load_brackets(symbol)
        mm = f"{BRACKETS_SNAPSHOT.name} ({snapshot_date()})"
    except DataError:
        brackets, mm = None, f"backtest.maintenance_margin_rate ({symbol} is not in {BRACKETS_SNAPSHOT.name})"
    return bp, brackets, {"lot_step": {"value": bp.lot_step, "from": where},
                          "min_notional": {"value": bp.min_notional, "from": where}, "brackets_from": mm}



def market_params(symbol: str, market: Literal["spot", "futures"], bp: BacktestParams) -> tuple[BacktestParams, np.ndarray | None]:
    """``bp`` and the brackets a run of ``bp`` on ``symbol``'s ``market`` trades with: on futures
    :func:`perp_inputs`' (the snapshots' lot filters replacing ``lot_step``/``min_notional``, the brackets), on
    spot ``bp`` as set and no brackets. What :func:`mlrisk.backtest.runner.run_backtest` and the live bot's
    parameter vector take."""
    if market != "futures":
        return bp, None
    out, brackets, _ = perp_inputs(bp, symbol)
    return out, brackets
