"""Paper mode on USDT-M futures: the paper account charges funding at funding times with the settled rate
and liquidates on the mark price through the backtest's own code and join; the venue reads the settlements
and mark candles as Binance documents them (paged); a settlement not yet visible is charged when it shows
up, and the journal says so; brackets, lot step and minimum notional come from one function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fake_binance import FakeBinance, make_candles, make_funding, make_mark
from mlrisk.backtest import engine as E
from mlrisk.backtest.futures import market_columns, market_params
from mlrisk.backtest.runner import params_vector, run_backtest, trades_frame
from mlrisk.config.backtest import BacktestParams
from mlrisk.data import derivatives as dv
from mlrisk.data.klines import klines_from_rows
from mlrisk.exchange import ExchangeClient
from mlrisk.live.feeds.market import TableInputs, VenueInputs
from mlrisk.live.sim_account import AccountState
from mlrisk.live.venue import FuturesVenue
from mlrisk.settings import BinanceSettings
from test_venue_contract import check

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, on the 8-hour funding grid
N = 40
BP = BacktestParams(initial_equity=1000.0, threshold=0.1, leverage=20.0, order_size=0.5, pyramid_max=1,
                    entry="market", fee_rate=0.0005, slippage_bps=1.0)


def _market_data():
    """Candles, funding rows (every 8 h, 23 ms of jitter on every other one, large rates) and mark rows
    whose low at candle 14 dips far below the last price's (a liquidation only the mark sees)."""
    candles = make_candles(N, start_ms=T0, seed=3)
    funding = make_funding(N // 8 + 1, start_ms=T0, jitter_ms=23, seed=4)
    for r, rate in zip(funding, [0.001, 0.003, -0.002, -0.003, 0.002, 0.001]):
        r["fundingRate"] = f"{rate:.8f}"   # the long pays at 08:00, receives at 00:00; the short receives at 08:00
    mark = make_mark(candles)
    o = float(mark[14][1])
    mark[14] = [mark[14][0], mark[14][1], mark[14][2], f"{o * 0.93:.8f}", mark[14][4], *mark[14][5:]]
    p = np.full(N, 0.5)
    p[[0, 16]] = 0.9    # long at candle 1 (held through the 08:00 settlement, liquidated on the mark at 14)
    p[25] = 0.1         # then long from 17, closed at 26 and short from 26 (through the 00:00 settlement)
    return candles, funding, mark, p


def _client(fb: FakeBinance) -> ExchangeClient:
    return ExchangeClient(BinanceSettings(base_url=fb.url, timeout_s=5), sleep=lambda s: None, market="futures")


def _fake(candles, funding, mark, now_ms: int | None = None) -> FakeBinance:
    return FakeBinance(futures={("BTCUSDT", "1h"): candles}, candles={}, funding={"BTCUSDT": funding},
                       mark={("BTCUSDT", "1h"): mark}, now_ms=now_ms)


def _backtest(candles, funding, mark, p):
    kl = klines_from_rows(candles)
    pred = kl[["open_time", "open", "high", "low", "close"]].assign(p_up=p)
    f = dv.funding_from_raw([r["fundingTime"] for r in funding], [r["fundingRate"] for r in funding])
    m = dv.to_mark(klines_from_rows(mark))
    pred = pd.concat([pred, market_columns(pred["open_time"], f, m, H)], axis=1)
    bp, brackets = market_params("BTCUSDT", "futures", BP)
    return run_backtest(pred, bp, H, brackets), kl, bp, brackets


def _paper(kl: pd.DataFrame, p, inputs, bp, brackets, between=None):
    """Step the paper account candle by candle as the bot does; ``between(i)`` runs before candle ``i``."""
    acct = AccountState.fresh(params_vector(bp, H))
    cfg = E.config(params_vector(bp, H))
    through, equity, rows, notes = None, [], [], {}
    for i, row in enumerate(kl.itertuples()):
        if between is not None:
            between(i)
        cm, through, note = inputs.candle(T0 + i * H, through)
        notes[i] = note
        eq, tr = acct.step(row.open, row.high, row.low, row.close, p[i], cfg, i == len(kl) - 1, cm, brackets)
        equity.append(eq)
        rows.append(tr)
    if acct.side != 0:
        equity[-1], tr = acct.close_out(kl["close"].iloc[-1], cfg, brackets)
        rows.append(tr)
    return np.array(equity), trades_frame(np.concatenate(rows), kl["open_time"]), notes


def test_the_paper_account_across_a_settlement_and_a_mark_liquidation_equals_the_backtest():
    candles, funding, mark, p = _market_data()
    r, kl, bp, brackets = _backtest(candles, funding, mark, p)
    # the case does what it claims: funding charged (paid and received), a liquidation the last price misses
    assert (r.trades["funding"] > 0).any() and (r.trades["funding"] < 0).any()
    liq = r.trades[r.trades.exit_reason == "liquidation"]
    assert len(liq) == 1 and liq.exit_candle.iloc[0] == 14 and liq.exit_price.iloc[0] < kl["low"].iloc[14]
    assert r.sources == {"funding": "history", "liquidation": "mark", "last_price_candles": 0, "maintenance": "brackets"}
    with _fake(candles, funding, mark, now_ms=T0 + N * H + 10) as fb:
        equity, trades, notes = _paper(kl, p, VenueInputs(FuturesVenue(_client(fb), "BTCUSDT"), "1h", H), bp, brackets)
    assert not any(notes.values())
    pd.testing.assert_frame_equal(trades, r.trades, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(equity, r.equity, rtol=1e-9, atol=1e-9)


def test_the_replay_inputs_give_the_backtest_too():
    candles, funding, mark, p = _market_data()
    r, kl, bp, brackets = _backtest(candles, funding, mark, p)
    f = dv.funding_from_raw([x["fundingTime"] for x in funding], [x["fundingRate"] for x in funding])
    inputs = TableInputs(kl["open_time"].astype("int64").to_numpy(), f, dv.to_mark(klines_from_rows(mark)), H)
    equity, trades, _ = _paper(kl, p, inputs, bp, brackets)
    pd.testing.assert_frame_equal(trades, r.trades, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(equity, r.equity, rtol=1e-9, atol=1e-9)
    assert inputs.sources == {"funding": "history", "liquidation": "mark"}


def test_a_settlement_not_yet_visible_is_charged_when_it_shows_up_and_journalled():
    candles, funding, mark, p = _market_data()
    _, kl, bp, brackets = _backtest(candles, funding, mark, p)
    late = funding[1]                     # the 08:00 settlement (+23 ms), on the long held from candle 1
    shown = [r for r in funding if r is not late]
    with _fake(candles, shown, mark, now_ms=T0 + N * H + 10) as fb:
        def between(i: int) -> None:
            if i == 9:                    # visible only after candle 8's close
                fb.funding["BTCUSDT"] = funding
        inputs = VenueInputs(FuturesVenue(_client(fb), "BTCUSDT"), "1h", H)
        _, trades, notes = _paper(kl, p, inputs, bp, brackets, between)
    assert notes[8] == [] and notes[9] == [{"kind": "funding_late", "settlement_ms": late["fundingTime"],
                                            "rate": 0.003, "charged_at_ms": T0 + 9 * H}]
    first = trades.iloc[0]
    mark_open_9 = float(mark[9][1])       # charged at candle 9's open, on its mark
    assert first.funding == pytest.approx(0.003 * first.qty * mark_open_9, rel=1e-12)
    assert all(n == [] for i, n in notes.items() if i != 9)


def test_a_mark_candle_not_yet_visible_leaves_the_last_price_and_is_journalled():
    candles, funding, mark, p = _market_data()
    _, kl, bp, brackets = _backtest(candles, funding, mark, p)
    with _fake(candles, funding, [m for m in mark if m[0] != T0 + 5 * H], now_ms=T0 + N * H + 10) as fb:
        inputs = VenueInputs(FuturesVenue(_client(fb), "BTCUSDT"), "1h", H)
        cm, _, notes = inputs.candle(T0 + 5 * H, None)
        assert notes == [{"kind": "mark_missing", "open_ms": T0 + 5 * H}] and np.isnan(cm.mark).all()
        cm, _, notes = inputs.candle(T0 + 6 * H, None)
        assert notes == [] and cm.mark == pytest.approx(tuple(float(x) for x in mark[6][1:4]))


def test_the_venue_reads_funding_and_mark_candles_paged_as_binance_documents():
    candles = make_candles(1600, start_ms=T0, seed=1)
    funding = make_funding(2500, start_ms=T0, jitter_ms=7)
    with _fake(candles, funding, make_mark(candles), now_ms=T0 + 3000 * 8 * H) as fb:
        c = _client(fb)
        check("market_data/futures_fundingRate", c.call("futures_funding_rate", symbol="BTCUSDT", startTime=T0, limit=2))
        check("market_data/futures_markPriceKlines", c.call("futures_mark_price_klines", symbol="BTCUSDT", interval="1h", limit=2))
        fb.requests.clear()
        venue = FuturesVenue(c, "BTCUSDT")
        f = venue.funding_history(T0 + 8 * H, T0 + 2400 * 8 * H)
        m = venue.mark_klines("1h", T0 + 10 * H, T0 + 1510 * H)
        pages_f = [q for q in fb.requests_to("/fapi/v1/fundingRate")]
        pages_m = [q for q in fb.requests_to("/fapi/v1/markPriceKlines")]
    assert list(f.columns) == dv.FUNDING_COLUMNS and len(f) == 2399
    assert f["funding_time_raw"].iloc[0].value // 10**6 == funding[1]["fundingTime"]  # the jitter kept
    assert f["funding_rate"].tolist() == [float(r["fundingRate"]) for r in funding[1:2400]]
    assert len(pages_f) == 3 and all(int(q["limit"]) <= 1000 for q in pages_f)
    assert list(m.columns) == dv.MARK_COLUMNS and len(m) == 1500
    assert m["open_time"].iloc[0].value // 10**6 == T0 + 10 * H and m["open_time"].iloc[-1].value // 10**6 == T0 + 1509 * H
    assert len(pages_m) == 2 and all(int(q["limit"]) <= 1500 for q in pages_m)


def test_one_function_chooses_brackets_lot_step_and_minimum_notional():
    bp, b = market_params("BTCUSDT", "futures", BP)
    assert b is not None and b[0].tolist() == [0.0, 0.004, 0.0]
    assert (bp.lot_step, bp.min_notional) == (0.001, 100.0)   # the exchange-info snapshot's futures filters, replacing
    assert market_params("BTCUSDT", "futures", BP.model_copy(update={"min_notional": 500.0}))[0].min_notional == 100.0
    spot = BP.model_copy(update={"lot_step": 0.01})
    assert market_params("BTCUSDT", "spot", spot) == (spot, None)   # spot: the parameters as set
    bp, b = market_params("XYZUSDT", "futures", BP)                  # not in the snapshots: the parameters
    assert b is None and (bp.lot_step, bp.min_notional) == (BP.lot_step, BP.min_notional) and bp.leverage == BP.leverage


def test_the_paper_bot_on_futures_trades_as_the_backtest_of_its_own_decisions(tmp_path):
    """The whole bot (Bot.process: risk limits off, state committed per candle) with the venue's funding and
    mark candles: the backtest of the same candles, P(up), funding and mark gives its trades and equity."""
    import json

    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import Bot, run_replay, trades_table
    from mlrisk.live.risk import RiskLimits
    from mlrisk.live.state import StateStore

    candles, funding, mark, _ = _market_data()
    o = float(mark[14][1])
    mark[14] = [mark[14][0], mark[14][1], f"{o * 1.07:.8f}", f"{o * 0.93:.8f}", *mark[14][4:]]  # either side liquidates
    kl = klines_from_rows(candles)
    # a flat rate unlike the first tier's 0.004: the brackets decide the liquidation price
    bp, brackets = market_params("BTCUSDT", "futures", BP.model_copy(update={"maintenance_margin_rate": 0.02}))
    log = tmp_path / "bot.jsonl"
    with _fake(candles, funding, mark, now_ms=T0 + N * H + 10) as fb, \
            StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", mode="replay") as store:
        bot = Bot(lambda h: 0.7 if h["close"].iloc[-1] > h["close"].iloc[-2] else 0.3, 5, 4, params_vector(bp, H), H,
                  RiskLimits.none(), store, CandleLog(log, None), perp=VenueInputs(FuturesVenue(_client(fb), "BTCUSDT"), "1h", H),
                  brackets=brackets)
        res = run_replay(bot, kl)
    recs = [json.loads(x) for x in log.read_text().splitlines() if "event" not in json.loads(x)]
    p = np.array([np.nan if r["p_up"] is None else r["p_up"] for r in recs])
    f = dv.funding_from_raw([r["fundingTime"] for r in funding], [r["fundingRate"] for r in funding])
    pred = kl[["open_time", "open", "high", "low", "close"]].assign(p_up=p)
    pred = pd.concat([pred, market_columns(pred["open_time"], f, dv.to_mark(klines_from_rows(mark)), H)], axis=1)
    r = run_backtest(pred, bp, H, brackets)
    assert (r.trades.funding != 0).any() and (r.trades.exit_reason == "liquidation").any()
    pd.testing.assert_frame_equal(trades_table(res.trades, res.origin_ms, H), r.trades, rtol=1e-9, atol=1e-9,
                                  check_dtype=False)   # times: us (the replay's table) vs ms (the klines)
    np.testing.assert_allclose([x["equity"] for x in recs][:-1], r.equity[:-1], rtol=1e-9, atol=1e-9)
    assert res.equity == pytest.approx(r.equity[-1], rel=1e-9)
    assert not any("market_notes" in x for x in recs)
