"""DVC stage `backtest`: reports/predictions.parquet -> reports/metrics/backtest.json, reports/trades.csv,
reports/plots/equity.csv, and the sweep in reports/backtest/ (sweep.csv: every combination's metrics;
sweep_equity.parquet: every equity curve at up to 600 shared times). The report stage draws them.

Prices always come from the traded instrument's candles, data/raw/{SYMBOL}-{INTERVAL}.parquet, joined
by open time onto the predictions (whatever candles the model learned on), every traded candle in the
predictions' span stepped (one without a prediction: no signal); a prediction without its candle there
is an error. With ``data.market: futures`` the backtest also gets, from data/raw, the
funding history (the rate charged at each candle's open) and the mark-price candles (liquidation),
Binance's maintenance brackets from the shipped snapshot, and the symbol's lot step and minimum notional
from the shipped exchange-info snapshot (the live bot's filter code), which replace ``backtest.lot_step``
and ``backtest.min_notional``; backtest.json says which inputs were used (``sources``), the funding paid
and the P&L split into price, fees and funding, and equity.csv gets the cumulative funding paid."""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.config.backtest import BacktestParams
from mlrisk.config.data import DataParams
from mlrisk.errors import DataError
from mlrisk.stage import run_stage
from mlrisk.io import read_parquet, write_csv, write_json, write_parquet


def body(params, args) -> None:
    from mlrisk.backtest.overfitting import equity_returns, sharpe_stats, sweep_overfitting
    from mlrisk.backtest.performance import drawdown_curve, performance
    from mlrisk.backtest.runner import run_backtest, sweep_curves, sweep_report
    from mlrisk.backtest.selection import select_and_report

    from mlrisk.backtest.costs import funding_by_candle, pnl_split
    from mlrisk.backtest.futures import perp_inputs

    d, interval_ms = params.data, params.data.interval_ms
    pred = read_parquet(Path(args.predictions), "run `dvc repro evaluate`")
    select = read_parquet(Path(args.selection_predictions), "run `dvc repro evaluate`")
    raw = read_parquet(Path(args.raw_dir) / f"{d.symbol}-{d.interval}.parquet", "run `dvc repro fetch`")
    pred, select = (traded_candles(t, raw, args.raw_dir) for t in (pred, select))
    bp, brackets, inputs = params.backtest, None, {}
    if d.market == "futures":
        bp, brackets, inputs = perp_inputs(bp, d.symbol)
        for src in (inputs["lot_step"]["from"], inputs["brackets_from"]):
            if src.startswith(("params", "backtest.")):  # the shipped snapshots lack the symbol
                print(f"backtest: fallback: {src}")
        pred, select = (with_market_columns(t, d, args.raw_dir) for t in (pred, select))
    t0 = time.perf_counter()
    res = run_backtest(pred, bp, interval_ms, brackets)
    close = pred["close"].to_numpy(dtype="float64")
    metrics = performance(res.equity, bp.initial_equity, res.summary, interval_ms, close)
    grid = bp.sweep_grid()
    sweep = sweep_report(pred, bp, grid or [{}], interval_ms, brackets)  # no sweep: the main parameters alone
    if grid:
        metrics["sweep"] = sweep.summary()
    st = sharpe_stats(equity_returns(res.equity, bp.initial_equity)[:, 0])
    metrics |= {"sharpe_per_period": st["sr"], "n_returns": st["n"], "returns_skew": st["skew"], "returns_kurtosis": st["kurt"]}
    # the main strategy's PSR/DSR, every sweep combination (and the main one, if the grid lacks it) a trial; PBO of the sweep
    curves = sweep.equities if sweep.main is not None else np.vstack([sweep.equities, res.equity[None, :]])
    main = sweep.main if sweep.main is not None else len(curves) - 1
    metrics["overfitting"] = sweep_overfitting(curves, bp.initial_equity, main, bp.extra_trials)
    if grid and len(select) > 1:  # choose the combination on an earlier period, report it on this one
        report_period = pred[pred["open_time"] > select["open_time"].iloc[-1]].reset_index(drop=True)
        metrics["selection"] = select_and_report(select, report_period, bp, grid, interval_ms, brackets=brackets)
    funding_paid = None
    if d.market == "futures":
        metrics["sources"] = {**(res.sources or {}), **inputs}
        metrics["pnl"] = pnl_split(res.trades)  # quote currency: price - fees - funding = net
        if "funding_rate" in pred.columns:
            per_candle = funding_by_candle(res.trades, pred["funding_rate"].to_numpy(), pred["mark_open"].to_numpy()
                                           if "mark_open" in pred.columns else np.full(len(pred), np.nan),
                                           pred["open"].to_numpy(dtype="float64"))
            if per_candle is None:
                raise DataError("backtest: the funding rebuilt per candle does not match the trades' funding: a bug; report it")
            funding_paid = np.cumsum(per_candle)
    secs = time.perf_counter() - t0

    out = Path(args.out_dir)
    write_csv(out / "sweep.csv", sweep.table)
    write_parquet(out / "sweep_equity.parquet", sweep_curves(sweep, pred["open_time"], 600))
    write_csv(args.trades, res.trades)
    curve = pd.DataFrame({
        "time": pred["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "equity": res.equity,
        "buy_hold": bp.initial_equity * close / close[0], "drawdown": drawdown_curve(res.equity)})
    if funding_paid is not None:
        curve["funding_paid"] = funding_paid  # cumulative, quote currency, positive: paid (funding history only)
    write_csv(args.equity, curve)
    write_json(args.metrics, metrics)
    print(f"backtest: total return {metrics['total_return']:+.2%} (buy-and-hold {metrics['buy_hold_return']:+.2%}), "
          f"Sharpe {metrics['sharpe']:.2f}, max drawdown {metrics['max_drawdown']:.2%}, {metrics['trades']} trades, "
          f"{metrics['liquidations']} liquidations; {len(grid)} sweep combinations; {secs:.2f} s")
    if "sources" in metrics:
        src, pnl = metrics["sources"], metrics["pnl"]
        print(f"backtest: perpetual: funding {src['funding']} (paid {pnl['funding']:+,.2f}; negative = received), "
              f"liquidation on {src['liquidation']} price, maintenance {src['maintenance']}, lot step {src['lot_step']['value']:g} "
              f"and min notional {src['min_notional']['value']:g} from {src['lot_step']['from']}; P&L: price "
              f"{pnl['price']:+,.2f}, fees {-pnl['fees']:+,.2f}, funding {-pnl['funding']:+,.2f} = {pnl['net']:+,.2f}")
    ov = metrics["overfitting"]
    print(f"backtest: deflated Sharpe ratio {ov['dsr']:.2f} ({ov['trials']} trials), PBO of the sweep {ov['pbo']:.2f}"
          + (f"; chosen on {metrics['selection']['selection_period'][0][:10]}..{metrics['selection']['selection_period'][1][:10]}: "
             f"{metrics['selection']['chosen']} -> {metrics['selection']['report']['total_return']:+.2%} here "
             f"(rank {metrics['selection']['rank_on_report_period']} of {len(grid)})" if "selection" in metrics else ""))


OHLC = ["open", "high", "low", "close"]


def traded_candles(pred: pd.DataFrame, raw: pd.DataFrame, raw_dir: str) -> pd.DataFrame:
    """``pred`` on the traded instrument's candles ``raw`` (the fetch stage's table, in ``raw_dir``):
    one row per candle of ``raw`` from the first prediction's open time to the last one's, with that
    candle's open/high/low/close, so the engine steps every traded candle (its stops, liquidation and
    fills) as the live bot does; a candle without a prediction (the model's candles have a gap there,
    e.g. a spot halt with ``features.candles: spot``) gets ``p_up`` NaN (no signal) and the other
    columns NaN. A prediction whose candle ``raw`` lacks is a :class:`DataError` (the predictions and
    the candles come from different runs)."""
    t = pd.DatetimeIndex(raw["open_time"])
    idx = t.get_indexer(pd.DatetimeIndex(pred["open_time"]))
    if (idx < 0).any():
        first = pred["open_time"].iloc[int((idx < 0).argmax())]
        raise DataError(f"{int((idx < 0).sum())} prediction(s) from {first} have no candle in {raw_dir}: the predictions "
                        "and the candles come from different runs; run `dvc repro`")
    if len(pred) == 0:
        return pred.copy()
    span = raw.iloc[int(idx.min()) : int(idx.max()) + 1][["open_time", *OHLC]].reset_index(drop=True)
    span[OHLC] = span[OHLC].astype("float64")
    rest = pred.drop(columns=[c for c in ["open_time", *OHLC] if c in pred.columns]).set_index(pd.DatetimeIndex(pred["open_time"]))
    rest = rest.reindex(pd.DatetimeIndex(span["open_time"])).reset_index(drop=True)  # p_up NaN on the added rows
    return pd.concat([span, rest], axis=1)


def with_market_columns(pred: pd.DataFrame, d: DataParams, raw_dir: str) -> pd.DataFrame:
    """``pred`` with the perpetual's per-candle inputs (``funding_rate``, ``mark_open/high/low``;
    :func:`mlrisk.backtest.futures.market_columns`) from the funding and mark tables in ``raw_dir``
    (:func:`mlrisk.data.derivatives.raw_tables`);
    a table the fetch stage did not write (file source without such dumps) is left out, and the engine
    falls back (the constant funding_rate, the last price)."""
    from mlrisk.backtest.futures import market_columns
    from mlrisk.data.derivatives import raw_tables

    t = raw_tables(raw_dir, d.symbol, d.interval)
    cols = market_columns(pred["open_time"], t["funding"](), t["mark"](), d.interval_ms)
    return pd.concat([pred.reset_index(drop=True), cols], axis=1)


def add_args(p):
    p.add_argument("--raw-dir", default="data/raw", help="the fetch stage's candles (and futures tables)")
    p.add_argument("--predictions", default="reports/predictions.parquet")
    p.add_argument("--selection-predictions", default="reports/predictions_select.parquet",
                   help="P(up) on the period the sweep is ranked on (earlier than --predictions)")
    p.add_argument("--metrics", default="reports/metrics/backtest.json")
    p.add_argument("--trades", default="reports/trades.csv")
    p.add_argument("--equity", default="reports/plots/equity.csv")
    p.add_argument("--out-dir", default="reports/backtest")


if __name__ == "__main__":
    sys.exit(run_stage("backtest", __doc__, body, add_args, sections={"backtest": BacktestParams, "data": DataParams}))
