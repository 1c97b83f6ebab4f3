"""Benchmark: the mlrisk engine vs vectorbt's Portfolio.from_signals and backtesting.py.

Same signals, in a configuration all three express: long only, no leverage, one position,
market orders at the next open, a fee on every fill. Sizing is aligned: mlrisk's entry margin is
``order_size x free balance`` with the fee charged on top (as on a futures exchange); vectorbt's
``size_type='percent'`` and backtesting.py's fractional ``size`` include the fee, so they get
``order_size x (1 + fee)``. backtesting.py never trades on the first bar, so no signal is given
there, and the last signals close every position before the end.

Checks that the final equities agree, then prints candles/second for one run and
combinations/second for a sweep, as ratios to vectorbt measured in this same run.
Needs the bench extra:  MLRISK_EXTRAS=dev,bench bash scripts/setup.sh

    python bench/backtest.py [--candles 1000000] [--combos 1000] [--repeat 3]

``--engine-only`` times the mlrisk engine alone (no vectorbt or backtesting.py needed): one run on
``--candles`` candles without and with the perpetual-futures inputs (mark candles, funding at every
eighth open, the BTCUSDT brackets, a lot step), and the sweep, in candles and combinations per second.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
H = 3_600_000


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def market(n: int, seed: int) -> pd.DataFrame:
    """The shipped BTCUSDT 1h sample, tiled with fresh random-walk continuations up to ``n`` candles,
    and random probabilities of up (engine speed does not depend on the model)."""
    from mlrisk.data.sources import load_sample

    s = load_sample("BTCUSDT", "1h")
    rng = np.random.default_rng(seed)
    o, h, lo, c = (s[k].to_numpy() for k in ("open", "high", "low", "close"))
    reps = -(-n // len(c))
    parts, last = [], c[0]
    for _ in range(reps):
        scale = last / o[0]
        parts.append(np.c_[o, h, lo, c] * scale)
        last = parts[-1][-1, 3]
    arr = np.vstack(parts)[:n]
    p = rng.uniform(0, 1, n)
    p[0] = 0.5
    p[-3:] = [0.0, 0.5, 0.5]
    return pd.DataFrame({"open_time": pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC"),
                         "open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2], "close": arr[:, 3], "p_up": p})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candles", type=int, default=1_000_000, help="candles for the single-run speed test")
    ap.add_argument("--bt-candles", type=int, default=17_518, help="candles for backtesting.py (it is slow)")
    ap.add_argument("--sweep-candles", type=int, default=2_628, help="candles for the sweep (the sample's test part)")
    ap.add_argument("--combos", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine-only", action="store_true", help="time the mlrisk engine alone (no vectorbt)")
    args = ap.parse_args()
    if args.engine_only:
        engine_speed(args)
        return

    import vectorbt as vbt
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    from mlrisk.backtest import engine as E
    from mlrisk.backtest.runner import params_vector, run_backtest
    from mlrisk.config.backtest import BacktestParams

    fee, thr, size = 0.001, 0.2, 0.5
    bp = BacktestParams(initial_equity=10_000, threshold=thr, direction="long", leverage=1, order_size=size, pyramid_max=1,
                        entry="market", fee_rate=fee, slippage_bps=0, maintenance_margin_rate=0, min_notional=0)

    def ours(df: pd.DataFrame) -> float:
        return run_backtest(df, bp, H).equity[-1]

    prm = params_vector(bp, H)

    def engine(arrays: list[np.ndarray]) -> float:
        """The engine call alone: arrays in, equity and trade arrays out."""
        return E.run(*arrays, prm)[0][-1]

    def arrays_of(df: pd.DataFrame) -> list[np.ndarray]:
        return [df[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "p_up")]

    def vectorbt_run(df: pd.DataFrame, thresholds: np.ndarray | float = thr, sizes: np.ndarray | float = size):
        p = df["p_up"].to_numpy()
        th = np.atleast_1d(thresholds)
        long = pd.DataFrame(p[:, None] >= 0.5 + th[None, :]).shift(1, fill_value=False)
        short = pd.DataFrame(p[:, None] <= 0.5 - th[None, :]).shift(1, fill_value=False)
        sz = np.broadcast_to(np.atleast_1d(sizes) * (1 + fee), (len(th),))
        pf = vbt.Portfolio.from_signals(close=df["close"], entries=long, exits=short, price=df["open"], fees=fee,
                                        size=np.asarray(sz)[None, :], size_type="percent", init_cash=10_000,
                                        direction="longonly", freq="1h")
        return np.atleast_1d(pf.final_value().to_numpy())

    def backtesting_run(df: pd.DataFrame) -> float:
        sig = np.where(df["p_up"] >= 0.5 + thr, 1, np.where(df["p_up"] <= 0.5 - thr, -1, 0))
        data = pd.DataFrame({"Open": df["open"].to_numpy(), "High": df["high"].to_numpy(), "Low": df["low"].to_numpy(),
                             "Close": df["close"].to_numpy(), "Volume": 1.0},
                            index=pd.DatetimeIndex(df["open_time"]).tz_localize(None))

        class Threshold(Strategy):
            def init(self) -> None:
                pass

            def next(self) -> None:
                s = sig[len(self.data) - 1]
                if s == 1 and not self.position:
                    self.buy(size=size * (1 + fee))
                elif s == -1 and self.position:
                    self.position.close()

        bt = FractionalBacktest(data, Threshold, cash=10_000, commission=fee, fractional_unit=1e-8, finalize_trades=True)
        return float(bt.run()["Equity Final [$]"])

    # ---------------------------------------------------------- agreement
    small = market(args.bt_candles, seed=1)
    e_ours, e_vbt = ours(small), vectorbt_run(small)[0]
    t0 = time.perf_counter()
    e_bt = backtesting_run(small)
    t_bt = time.perf_counter() - t0
    print(f"final equity on {len(small):,} candles: mlrisk {e_ours:.6f}, vectorbt {e_vbt:.6f}, backtesting.py {e_bt:.6f}")
    print(f"  relative difference: vs vectorbt {abs(e_ours / e_vbt - 1):.1e}, vs backtesting.py {abs(e_ours / e_bt - 1):.1e} "
          "(backtesting.py rounds sizes to 1e-8 units)")
    assert abs(e_ours / e_vbt - 1) < 1e-9 and abs(e_ours / e_bt - 1) < 1e-6, "final equities disagree"

    # ---------------------------------------------------------- one run
    big = market(args.candles, seed=2)
    vectorbt_run(big.iloc[:1000])  # compile
    big_arrays, small_arrays = arrays_of(big), arrays_of(small)
    assert engine(big_arrays) == ours(big)
    t_ours = best_time(lambda: engine(big_arrays), args.repeat)
    t_ours_api = best_time(lambda: ours(big), args.repeat)
    t_vbt = best_time(lambda: vectorbt_run(big), args.repeat)
    t_ours_small = best_time(lambda: engine(small_arrays), args.repeat)
    cps_ours, cps_vbt = len(big) / t_ours, len(big) / t_vbt
    cps_bt, cps_ours_small = len(small) / t_bt, len(small) / t_ours_small
    print(f"\none backtest, {len(big):,} candles: mlrisk {t_ours * 1000:.1f} ms ({cps_ours:,.0f} candles/s), "
          f"vectorbt {t_vbt * 1000:.1f} ms ({cps_vbt:,.0f} candles/s)")
    print(f"  mlrisk / vectorbt speed: {cps_ours / cps_vbt:.1f}x  (engine call; with the pandas trades table "
          f"and summary, run_backtest: {t_ours_api * 1000:.1f} ms)")
    print(f"one backtest, {len(small):,} candles: mlrisk {t_ours_small * 1000:.2f} ms ({cps_ours_small:,.0f} candles/s), "
          f"backtesting.py {t_bt:.2f} s ({cps_bt:,.0f} candles/s)")
    print(f"  mlrisk / backtesting.py speed: {cps_ours_small / cps_bt:,.0f}x; backtesting.py / vectorbt: {cps_bt / cps_vbt:.4f}x")

    # ---------------------------------------------------------- sweep
    test = market(args.sweep_candles, seed=3)
    n_thr = max(1, int(round(np.sqrt(args.combos * 2))))
    # threshold 0 would make p = 0.5 both an entry and an exit for vectorbt; sizes stay below
    # 1 / (1 + fee) so that vectorbt's fee-inclusive percent can express them
    thresholds = np.linspace(0.01, 0.45, n_thr)
    sizes = np.linspace(0.05, 0.95, max(1, args.combos // n_thr))
    grid = [(t, s) for t in thresholds for s in sizes]
    prms = np.stack([params_vector(bp.model_copy(update={"threshold": float(t), "order_size": float(s)}), H) for t, s in grid])
    arrays = [test[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "p_up")]
    th_cols = np.array([t for t, _ in grid])
    sz_cols = np.array([s for _, s in grid])
    eq_ours, _ = E.sweep(*arrays, prms)
    finals_vbt = vectorbt_run(test, th_cols, sz_cols)
    worst = np.max(np.abs(eq_ours[:, -1] / finals_vbt - 1))
    print(f"\nsweep of {len(grid)} combinations (threshold x order size) on {len(test):,} candles: "
          f"final equities agree with vectorbt to {worst:.1e} relative")
    assert worst < 1e-9, "sweep final equities disagree"
    t_sweep = best_time(lambda: E.sweep(*arrays, prms), args.repeat)
    t_sweep_vbt = best_time(lambda: vectorbt_run(test, th_cols, sz_cols), args.repeat)
    print(f"  mlrisk {t_sweep:.3f} s ({len(grid) / t_sweep:,.0f} combinations/s), vectorbt {t_sweep_vbt:.3f} s "
          f"({len(grid) / t_sweep_vbt:,.0f} combinations/s)")
    print(f"  mlrisk / vectorbt speed: {t_sweep_vbt / t_sweep:.1f}x")
    import numba

    print(f"\n(numba threads: {numba.get_num_threads()}; best of {args.repeat}; vectorbt's and mlrisk's compile time excluded)")


def futures_inputs(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mark candles (the last-price candle widened by 0.1 %), funding 0.01 % at every eighth open and
    the shipped BTCUSDT brackets, for timing the engine with every perpetual-futures input in use."""
    from mlrisk.backtest.futures import load_brackets

    mark = np.c_[df["open"], df["high"] * 1.001, df["low"] * 0.999]
    funding = np.where(np.arange(len(df)) % 8 == 0, 0.0001, 0.0)
    return mark, funding, load_brackets("BTCUSDT")


def engine_speed(args: argparse.Namespace) -> None:
    """The engine's own speed: candles/s for one run (plain, then with the futures inputs and a lot
    step) and combinations/s for the sweep; best of ``args.repeat``, compile time excluded."""
    from mlrisk.backtest import engine as E
    from mlrisk.backtest.runner import params_vector
    from mlrisk.config.backtest import BacktestParams

    bp = BacktestParams(initial_equity=10_000, threshold=0.2, direction="long", leverage=1, order_size=0.5,
                        pyramid_max=1, entry="market", fee_rate=0.001, slippage_bps=0, maintenance_margin_rate=0,
                        min_notional=0)
    prm = params_vector(bp, H)
    prm_lot = params_vector(bp.model_copy(update={"lot_step": 0.001}), H)
    big = market(args.candles, seed=2)
    arrays = [big[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "p_up")]
    mark, funding, brackets = futures_inputs(big)
    E.run(*arrays, prm)
    E.run(*arrays, prm_lot, mark, funding, brackets)
    t_plain = best_time(lambda: E.run(*arrays, prm), args.repeat)
    t_fut = best_time(lambda: E.run(*arrays, prm_lot, mark, funding, brackets), args.repeat)
    print(f"one backtest, {len(big):,} candles: {t_plain * 1000:.1f} ms ({len(big) / t_plain:,.0f} candles/s); "
          f"with mark, funding, brackets and lot step: {t_fut * 1000:.1f} ms ({len(big) / t_fut:,.0f} candles/s)")
    test = market(args.sweep_candles, seed=3)
    a2 = [test[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "p_up")]
    n_thr = max(1, int(round(np.sqrt(args.combos * 2))))
    prms = np.stack([params_vector(bp.model_copy(update={"threshold": float(t), "order_size": float(s)}), H)
                     for t in np.linspace(0.01, 0.45, n_thr) for s in np.linspace(0.05, 0.95, max(1, args.combos // n_thr))])
    E.sweep(*a2, prms)
    t_sweep = best_time(lambda: E.sweep(*a2, prms), args.repeat)
    print(f"sweep of {len(prms)} combinations on {len(test):,} candles: {t_sweep:.3f} s "
          f"({len(prms) / t_sweep:,.0f} combinations/s)")


if __name__ == "__main__":
    main()
