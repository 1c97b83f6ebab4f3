"""The bot's loop: closed candles in, one decision per candle out, state committed per candle.

:class:`Bot` does one candle: P(up) from the pipeline's own :class:`~mlrisk.data.preprocess.PreprocessSpec`
and the model's compiled single-window inference (:class:`~mlrisk.model.inference.Predictor`), the
pure :func:`mlrisk.live.step.paper_step` (the backtest's per-candle step plus the risk controls),
then ONE transaction in the :class:`~mlrisk.live.state.StateStore` (step state, risk counters and
the processed mark, :meth:`~mlrisk.live.state.StateStore.commit_candle`) and one log line (a JSON
line in the log file, a readable line on stderr). A candle at or before the last processed one is
never decided again; after a crash the next start resumes at the next unprocessed candle.

Candle sources are in :mod:`mlrisk.live.feeds` (replay from a file, REST polling, the kline
websocket); the log line is :mod:`mlrisk.live.journal`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlrisk.backtest import engine as E
from mlrisk.errors import DataError
from mlrisk.live.feeds.inputs import InputMissing
from mlrisk.live.feeds.polling import PollingFeed
from mlrisk.live.feeds.replay import fill_gaps, open_ms
from mlrisk.live.journal import CandleLog
from mlrisk.live.risk import RiskLimits
from mlrisk.live.state import DuplicateOrder, StateStore, StepState, now_ms
from mlrisk.live.step import BotState, CandleResult, flatten, paper_step
from mlrisk.times import from_ms


# -------------------------------------------------------------------------------------------- bot
@dataclass
class Bot:
    """One decision per closed candle (see the module docstring). ``predict``: P(up) for a kline table
    ending at the candle (the :class:`~mlrisk.model.inference.Predictor`'s ``predict_latest``);
    ``need``: candles one window needs (``seq_len + warmup``); ``seq_len``; ``prm``: the engine's
    parameter vector; ``window_start_ms``: windows never reach before this open time (a replay's
    ``--start``, like the evaluate stage, whose windows stay inside the test part); ``clock``: ms
    for the orders-per-minute window (wall clock; a replay passes each candle's close)."""

    predict: Callable[[pd.DataFrame], float]
    need: int
    seq_len: int
    prm: np.ndarray
    interval_ms: int
    limits: RiskLimits
    store: StateStore
    log: CandleLog
    window_start_ms: int | None = None
    clock: Callable[[int], int] | None = None
    broker: Any = None  # an ExchangeBroker (testnet/live): the step's orders are written ahead, then sent
    #: the perpetual's per-candle funding and mark candle (:mod:`mlrisk.live.feeds.market`; None: the spot path)
    perp: Any = None
    brackets: np.ndarray | None = None  # maintenance tiers (:func:`mlrisk.backtest.futures.market_params`)

    def __post_init__(self) -> None:
        self.input_notes: list[dict[str, Any]] = []  # the current candle's InputMissing notes
        self.cfg = E.config(np.ascontiguousarray(self.prm, dtype=np.float64))
        st = self.store.step_state()
        self.state: BotState | None = None if st is None else BotState.from_blob(st.data)

    @property
    def last_processed(self) -> int | None:
        return self.store.last_processed_candle()

    def p_up(self, hist: pd.DataFrame) -> float:
        """P(up) at the close of the last candle of ``hist`` (NaN when no full window exists)."""
        if len(hist) < self.need:
            return math.nan
        if self.window_start_ms is not None:
            since = int((open_ms(hist.iloc[-self.seq_len:]) >= self.window_start_ms).sum())
            if since < self.seq_len:
                return math.nan
        try:
            return float(self.predict(hist.iloc[-self.need:]))
        except InputMissing as e:  # a derivatives input not there (not served yet, a spot halt): no decision, journalled
            self.input_notes.append(e.note)
            return math.nan

    def process(self, hist: pd.DataFrame, final: bool = False, available_ms: float | None = None,
                send: bool = True) -> CandleResult | None:
        """Decide the last candle of ``hist`` (closed candles, oldest first, contiguous); returns None
        when it was processed already. ``available_ms``: ``time.perf_counter()`` ms when the candle
        became available, for the logged latency. ``send=False`` (catching up on candles closed while
        the bot was down) with an exchange broker: the candle is stepped without a decision (P(up)
        none), so no late order is ever sent and the simulated account stays in line with the real one."""
        row = hist.iloc[-1]
        t_open = int(open_ms(hist.iloc[-1:])[0])
        last = self.last_processed
        if last is not None and t_open <= last:
            return None
        if self.state is None:
            self.state = BotState.fresh(self.prm, t_open, self.interval_ms)
        catch_up = self.broker is not None and not send
        self.input_notes = []
        p = math.nan if catch_up else self.p_up(hist)  # a decision that can no longer be acted on is not made
        clock = self.clock(t_open + self.interval_ms) if self.clock else now_ms()
        candle = (float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"]))
        mark = None if self.broker is None else self.broker.equity(candle[3])
        cm, notes = None, []
        if self.perp is not None:
            cm, through, notes = self.perp.candle(t_open, self.state.funding_through_ms)
        new, risk, res = paper_step(self.state, candle, t_open, p, self.cfg, self.limits, self.store.risk(), clock, final,
                                    mark=mark, market=cm, brackets=self.brackets)
        if cm is not None:
            new.funding_through_ms = through
        if new.entry_fraction is not None:  # the entry filled at this open: cut to the part the exchange filled
            if new.account.position().entries > self.state.account.position().entries:
                new.account.scale_newest_entry(new.entry_fraction)
            new.entry_fraction = None
        orders: list[Any] = []
        if self.broker is not None and send:
            orders, skipped = self.broker.prepare(res.orders, candle[3], t_open, state=new)
            res.blocked.extend(skipped)
        elif catch_up:
            res.blocked.append("catch-up: closed while the bot was down; stepped without a decision")
        # write-ahead: the candle's orders, its state and the processed mark in one transaction
        self.store.commit_candle(t_open, orders, step_state=StepState(1, new.to_blob(), t_open), risk=risk)
        self.state = new
        rec = res.record()
        notes = notes + self.input_notes  # input_missing: the window lacked a derivatives input, no decision
        if notes:  # a settlement charged late, a mark candle missing (see mlrisk.live.feeds.market)
            rec["market_notes"] = notes
        if self.broker is not None:
            sent = self.broker.send_all(orders)  # also with none: a futures broker keeps its protective orders
            self._follow(sent, t_open)
            rec["exchange_orders"] = [{"client_order_id": o.client_order_id, "side": o.side, "quantity": str(o.quantity),
                                       "status": o.status.value, "executed_qty": str(o.executed_qty),
                                       **({"reason": o.reason} if o.status.value == "rejected" else {})} for o in sent]
            rec["exchange_position"] = str(self.store.position(self.broker.symbol).quantity)
            rec["account_equity"] = mark
        if available_ms is not None:
            rec["latency_ms"] = round(time.perf_counter() * 1000 - available_ms, 3)
        self.log.write(rec)
        return res

    def _follow(self, sent: list[Any], t_open: int) -> None:
        """The simulated account follows the real one: a market entry the exchange did not execute
        (cancelled with nothing executed) is dropped; one it filled in part (cancelled/expired with
        some executed) fills the engine's entry at the next open to that part (see docs/live.md)."""
        for o in sent:
            if o.leg != "entry" or o.type != "MARKET" or o.status.value != "cancelled" or not self.state.account.market_entry:
                continue
            part = float(o.executed_qty / o.quantity) if o.quantity else 0.0
            if part <= 0:
                self.state.account.cancel_new_entries(newest_limit=False)
            elif part < 1:
                self.state.entry_fraction = part
            else:
                continue
            self.store.save_step_state(StepState(1, self.state.to_blob(), t_open))

    def flatten(self) -> tuple[float, np.ndarray] | None:
        """Close the position at the last processed close (reason ``end``), cancel pending entries,
        save; with an exchange broker also sell the real position (leg ``flat``). None when there is
        nothing to close."""
        if self.state is None:
            return None
        new, equity, trades = flatten(self.state, self.cfg, self.brackets)
        self.store.save_step_state(StepState(1, new.to_blob(), self.last_processed or 0))
        self.state = new
        if self.broker is not None and self.last_processed is not None and new.last_close is not None:
            orders, _ = self.broker.prepare([{"leg": "flat", "type": "MARKET"}], new.last_close, self.last_processed)
            for o in orders:  # the real position, sold once: written ahead, then sent
                try:
                    self.store.insert_order(o)
                except DuplicateOrder:
                    continue
                self.broker.send(o.client_order_id)
        return equity, trades


# ----------------------------------------------------------------------------------------- replay
@dataclass
class ReplayResult:
    candles: int
    equity: float
    trades: np.ndarray          # engine trade rows, candle numbers from the first replayed candle
    origin_ms: int
    seconds: float
    halts: list[tuple[int, str]] = field(default_factory=list)  # (open ms of the candle whose close halted, reason)
    limit_candles: dict[str, int] = field(default_factory=dict)  # limit -> candles where it removed/closed something

    def limits_note(self, interval_ms: int) -> str:
        """What the risk limits did, for the replay's summary line ("" when none bound): when trading
        first halted (the halting candle's close, UTC) and why, how many candles each limit changed,
        and that the backtest has no such limits (``--no-risk-limits`` replays without them)."""
        if not self.halts and not self.limit_candles:
            return ""
        parts = []
        if self.halts:
            t, why = self.halts[0]
            parts.append(f"trading halted at {from_ms(t + interval_ms):%Y-%m-%d %H:%M} UTC ({why})"
                         + (f", {len(self.halts)} halts in all" if len(self.halts) > 1 else ""))
        if self.limit_candles:
            parts.append("orders removed on " + ", ".join(f"{n} candle{'s' * (n != 1)} by {k}"
                                                          for k, n in sorted(self.limit_candles.items())))
        return ("risk limits bound: " + "; ".join(parts) + "; the backtest has no risk limits: replay with "
                "--no-risk-limits for a like-for-like comparison")


def run_replay(bot: Bot, candles: pd.DataFrame, start_ms: int | None = None) -> ReplayResult:
    """Drive ``bot`` through every candle of ``candles`` with open time >= ``start_ms`` (earlier
    candles are history for the features), as fast as it can; the last candle is the end of the
    data (no orders at its close, the position closed at its close, like the backtest)."""
    t = open_ms(candles)
    first = 0 if start_ms is None else int(np.searchsorted(t, start_ms))
    if first >= len(candles):
        raise DataError(f"--start {from_ms(start_ms).isoformat()} is after the last candle of the file "
                        f"({from_ms(int(t[-1])).isoformat()})")
    t0 = time.perf_counter()
    rows: list[np.ndarray] = []
    n = 0
    halts: list[tuple[int, str]] = []
    hit: dict[str, int] = {}
    halted = bot.store.risk().halted
    for i in range(first, len(candles)):
        res = bot.process(candles.iloc[max(0, i - bot.need - 1): i + 1], final=i == len(candles) - 1)
        if res is None:
            continue
        n += 1
        rows.append(res.trades)
        if res.halted and not halted:
            halts.append((res.open_ms, res.halt_reason))
        halted = res.halted
        for k in res.limits:
            hit[k] = hit.get(k, 0) + 1
    equity = bot.state.last_equity if bot.state is not None else float(bot.prm[E.P_INITIAL])
    if bot.state is not None and bot.state.account.side != 0:
        out = bot.flatten()
        if out is not None:
            equity, tr = out
            rows.append(tr)
    trades = np.concatenate(rows) if rows else np.empty((0, E.N_TRADE_FIELDS))
    origin = bot.state.origin_ms if bot.state is not None else int(t[first])
    return ReplayResult(n, equity, trades, origin, time.perf_counter() - t0, halts, hit)


def trades_table(trades: np.ndarray, origin_ms: int, interval_ms: int) -> pd.DataFrame:
    """Trade rows as the backtest stage's ``reports/trades.csv`` table (UTC times)."""
    from mlrisk.backtest.runner import trades_frame

    n = int(trades[:, [E.T_ENTRY_IDX, E.T_EXIT_IDX]].max()) + 1 if len(trades) else 1
    times = pd.Series(pd.to_datetime(origin_ms + np.arange(n) * interval_ms, unit="ms", utc=True))
    return trades_frame(trades, times)


# ------------------------------------------------------------------------------------------ stop
class Stopper:
    """Whether to stop: SIGTERM/SIGINT received (:meth:`request`) or the kill-switch file exists."""

    def __init__(self, kill_switch_file: str | Path | None) -> None:
        self.kill_switch_file = None if kill_switch_file is None else Path(kill_switch_file)
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason

    def __call__(self) -> bool:
        if self.reason is None and self.kill_switch_file is not None and self.kill_switch_file.exists():
            self.reason = f"kill switch file {self.kill_switch_file} exists"
        return self.reason is not None


def run_paper(bot: Bot, feed: PollingFeed, stop: Stopper, on_candle: Callable[[CandleResult], None] | None = None) -> str:
    """Run until ``stop()``: resume after the last processed candle (or start with the candle now
    forming), catch up on every closed candle since, then one decision per new close. Returns the
    reason it stopped; raises :class:`FeedStalled` when the feed stays stale."""
    iv = bot.interval_ms
    last = bot.last_processed
    if last is not None:
        nxt = last + iv
    else:
        nxt = feed.server_now() // iv * iv  # the candle forming now is the first one decided
    hist = feed.history(nxt - (bot.need + 2) * iv)
    hist = fill_gaps(hist, iv) if len(hist) else hist
    while not stop():
        t = open_ms(hist) if len(hist) else np.empty(0, dtype="int64")
        todo = np.nonzero(t >= nxt)[0]
        if len(todo) == 0:
            new = feed.wait_for(nxt)
            if new is None:
                break
            avail = time.perf_counter() * 1000
            hist = fill_gaps(pd.concat([hist, new], ignore_index=True), iv) if len(hist) else fill_gaps(new, iv)
            hist = hist.iloc[-(bot.need + 64):].reset_index(drop=True)
            continue_avail = avail
        else:
            continue_avail = None
        t = open_ms(hist)
        todo = np.nonzero(t >= nxt)[0]
        for i in todo:
            if stop():
                break
            res = bot.process(hist.iloc[: i + 1], available_ms=continue_avail, send=i == todo[-1])
            nxt = int(t[i]) + iv
            if res is not None and on_candle is not None:
                on_candle(res)
    return stop.reason or "stopped"
