"""What the chaos tests (test_live_chaos.py, in process; test_live_kill.py, a real process killed with
SIGKILL) share: their knobs (environment variables), Binance's documented behaviours switched on at
random in seeded epochs, the counts the issue asks for, and the end-of-run checks against the fake
exchange's own books.

Knobs (all optional): ``CHAOS_SEED`` (the seed of every random draw, default 2026),
``CHAOS_CANDLES`` (candles per run; default each test's short length),
``CHAOS_RATE`` (the probability that each documented behaviour is on in an epoch, default
0.5), ``CHAOS_LAG_MS`` (how long reads lag writes when that behaviour is on, ms of the fake
exchange's clock, default 10000: longer than the 5 s the bot waits before it calls an order absent,
the length of python-binance's recvWindow), ``CHAOS_REPORT`` (a JSON file the figures are
merged into, one key per test run; none: not written).

An epoch is one stretch of the run (each start of the bot, and every ``EPOCH`` candles): at its
start every documented switch of the fake goes off, then ``fx.enable_documented(seed_i, rate,
lag_ms)`` turns each on with probability ``rate`` (``seed_i`` drawn from the run's seed), so over a
run every behaviour is on in some epochs and off in others. What fired is the fake's own
``fx.documented_report()`` (counts of answers each behaviour changed)."""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

EPOCH = 20   # candles per documented-behaviour epoch (a new epoch also starts at every start of the bot)
# every documented switch of the fakes, off (tests/fake_exchange.py, tests/fake_futures.py __init__)
SPOT_OFF: dict[str, Any] = {"query_lag_ms": 0, "trade_lag_ms": 0, "position_lag_ms": 0, "market_fill_fraction": None,
                            "archive_after_days": None, "lookup_window": False}
FUTURES_OFF: dict[str, Any] = {**SPOT_OFF, "algo_lag_ms": 0, "algo_reject": False, "order_retention": False,
                               "trade_window": False}


def seed() -> int:
    return int(os.environ.get("CHAOS_SEED", "2026"))


def candles(default: int) -> int:
    return int(os.environ.get("CHAOS_CANDLES", str(default)))


def rate() -> float:
    return float(os.environ.get("CHAOS_RATE", "0.5"))


def lag_ms(default: int = 10000) -> int:
    return int(os.environ.get("CHAOS_LAG_MS", str(default)))


class Documented:
    """The documented behaviours of one fake, redrawn per epoch (see the module docstring)."""

    def __init__(self, fx: Any, rng: np.random.Generator, market: str, lag: int | None = None) -> None:
        self.fx, self.rng, self.off = fx, rng, (FUTURES_OFF if market == "futures" else SPOT_OFF)
        self.lag = lag_ms() if lag is None else lag   # ms of the fake's clock
        self.epochs: Counter[str] = Counter()     # behaviour -> epochs it was on
        self.draws: list[dict[str, Any]] = []     # (seed, what was on) per epoch, for the report

    def new_epoch(self) -> dict[str, Any]:
        s = int(self.rng.integers(2**31))
        with self.fx._xlock:
            for attr, value in self.off.items():
                setattr(self.fx, attr, value)
            on = self.fx.enable_documented(s, rate(), self.lag)
        self.epochs.update(on.keys())
        self.draws.append({"seed": s, "on": {k: (str(v) if not isinstance(v, (int, float, bool, dict)) else v)
                                             for k, v in on.items()}})
        return on

    def all_off(self) -> None:
        """Every switch off and no fault left (the final reconciliation sees the exchange as it is)."""
        with self.fx._xlock:
            for attr, value in self.off.items():
                setattr(self.fx, attr, value)
            self.fx.scheduled.clear()


def executions(fx: Any) -> dict[str, int]:
    """client order id -> how many exchange orders with that id executed (executedQty > 0). A filled
    order frees its id at Binance (spot "New order": "Orders with the same newClientOrderID can be
    accepted only when the previous one is filled"), so a decision re-sent after it filled shows as two
    executed exchange orders with the same id."""
    with fx._xlock:
        return dict(Counter(o["clientOrderId"] for o in fx.orders if o["executedQty"] > 0))


def duplicates(fx: Any) -> int:
    """Decisions executed more than once: the extra executions."""
    return sum(n - 1 for n in executions(fx).values() if n > 1)


def fills_vs_trades(store: Any, fx: Any) -> tuple[list[tuple], list[tuple]]:
    """(the state file's fills, the exchange's trades) as sorted (trade id, price, qty, commission, asset)."""
    recorded = sorted((f.trade_id, f.price, f.qty, f.commission, f.commission_asset) for f in store.fills())
    with fx._xlock:
        traded = sorted((int(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]),
                         t["commissionAsset"]) for t in fx.trades)
    return recorded, traded


def executed_vs_recorded(store: Any, fx: Any) -> list[str]:
    """One line per exchange order whose execution the state file does not record as it is (client id
    unknown, executed quantity different), and per recorded execution the exchange does not have."""
    out = []
    with fx._xlock:
        ex: dict[str, Decimal] = {}
        for o in fx.orders:
            if o["executedQty"] > 0:
                ex[o["clientOrderId"]] = ex.get(o["clientOrderId"], Decimal(0)) + o["executedQty"]
    rec = {o.client_order_id: o.executed_qty for o in store.orders() if o.executed_qty > 0}
    for cid in sorted(set(ex) | set(rec)):
        if ex.get(cid) != rec.get(cid):
            out.append(f"{cid}: the exchange executed {ex.get(cid, 0)}, the state file records {rec.get(cid, 0)}")
    return out


def exchange_position(fx: Any, market: str) -> Decimal:
    """The exchange's true position (its matching engine, not a lagging read): spot, the BTC held (the
    run starts with none); futures, the signed position."""
    if market == "spot":
        return sum(fx.balance("BTC"), Decimal(0))
    return fx.position()[0]


def write_report(name: str, figures: dict[str, Any]) -> None:
    """Merge ``figures`` under ``name`` into the JSON file ``CHAOS_REPORT`` (if set)."""
    path = os.environ.get("CHAOS_REPORT")
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p.with_suffix(p.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(p.read_text()) if p.exists() and p.read_text().strip() else {}
        data[name] = figures
        p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def in_flight(store: Any, fx: Any) -> list[str]:
    """Client ids the state file still has to reconcile (pending, unknown, or open) that are not really open at
    the exchange (a resting order, or a futures algo order not triggered yet)."""
    from mlrisk.live.state import OrderStatus

    with fx._xlock:
        open_ids = {o["clientOrderId"] for o in fx.orders if o["status"] in ("NEW", "PARTIALLY_FILLED")}
        open_ids |= {a["clientAlgoId"] for a in getattr(fx, "algos", []) if a["algoStatus"] == "NEW"}
    return [o.client_order_id for o in store.orders_to_reconcile()
            if o.status is not OrderStatus.OPEN or o.client_order_id not in open_ids]
