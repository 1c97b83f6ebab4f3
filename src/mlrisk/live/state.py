"""The live bot's state: one SQLite file (stdlib ``sqlite3``, WAL journal, one transaction per change).

What it holds, and why:

- **orders**, keyed by their deterministic client order id (:mod:`mlrisk.live.client_ids`), each
  with a status from a small state machine (:data:`TRANSITIONS`; any other move raises
  :class:`IllegalTransition`). An order is inserted as ``pending_submit`` *before* it is sent
  (write-ahead); inserting a client id a second time is refused (:class:`DuplicateOrder`), which is
  what keeps a restarted bot from sending the same decision twice. A send that times out or gets a
  5xx is ``unknown`` and is settled from the exchange's records by its client id, never sent again
  (there is no ``unknown -> pending_submit``). An ``order_events`` row records every status change.
- **funding** the exchange settled on the futures position (idempotent on the exchange's transaction id;
  schema version 2), what the wallet received (> 0) or paid (< 0) at each funding time,
- **fills** with their fees (idempotent on the exchange's trade id), **positions** (signed base
  quantity and average entry price), the engine's **per-candle step state** (an opaque blob with a
  version number: its layout belongs to :mod:`mlrisk.strategy`), the **last processed candle**
  (open time, ms UTC) and the **risk counters** (day start equity, peak equity, halted + reason).
- :meth:`StateStore.commit_candle` writes a candle's decided orders, the step state and the
  processed mark in ONE transaction: after a crash either all of it is there (the orders are then
  queried/sent, the candle is never decided again) or none of it (the candle is decided again).
- **meta**: the symbol, interval, market, mode and client id prefix the file belongs to; opening it
  for anything else is refused (a paper-mode file cannot be resumed with real money).
- **schema_version**: a file written by an older schema is migrated on open (:data:`MIGRATIONS`, all
  steps in the opening transaction); a file written by a newer schema is refused.

Nothing secret is stored: the store never receives the settings' keys. Decimal quantities and
prices are stored as text (exact); equities as floats (quote currency, e.g. USDT). Times are epoch
milliseconds UTC.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from mlrisk.errors import MlriskError

SCHEMA_VERSION = 2
#: The schema's history: ``MIGRATIONS[v]`` are the SQL statements that turn a version ``v`` file into
#: version ``v + 1``. Opening an older file applies every step up to :data:`SCHEMA_VERSION` in one
#: transaction (all or nothing). A schema change bumps :data:`SCHEMA_VERSION`, changes ``_SCHEMA``
#: (new files) and adds its step here (old files).
_FUNDING_TABLE = ("CREATE TABLE funding (tran_id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, asset TEXT NOT NULL, "
                  "amount TEXT NOT NULL, time_ms INTEGER NOT NULL)")
MIGRATIONS: dict[int, tuple[str, ...]] = {1: (_FUNDING_TABLE,)}   # 1 -> 2: the futures funding settled


class StateError(MlriskError):
    """The state file cannot be used as asked (another symbol/mode, newer schema, re-processing)."""


class DuplicateOrder(StateError):
    """An order with this client order id is already recorded: it must not be sent again."""


class IllegalTransition(StateError):
    """An order status change the state machine does not allow (e.g. filled -> open)."""


class OrderStatus(str, Enum):
    PENDING_SUBMIT = "pending_submit"   # recorded, maybe not sent yet (write-ahead)
    OPEN = "open"                       # on the book (NEW or PARTIALLY_FILLED)
    FILLED = "filled"
    CANCELLED = "cancelled"             # CANCELED or EXPIRED (executed_qty says how much traded)
    REJECTED = "rejected"
    UNKNOWN = "unknown"                 # sent, outcome unknown (timeout, 5xx, -1007): query it

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


S = OrderStatus
#: Allowed status changes. ``open -> open`` and ``unknown -> unknown`` record progress (a partial fill,
#: another failed query). An ``unknown`` order is never sent again (a filled order frees its client id on
#: Binance, so a resend could fill twice): it is settled from the exchange's records, or cancelled when
#: they show it never executed.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_SUBMIT: frozenset({S.OPEN, S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}),
    S.OPEN: frozenset({S.OPEN, S.FILLED, S.CANCELLED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.UNKNOWN, S.OPEN, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}

@dataclass(frozen=True)
class NewOrder:
    """An order decided for a candle, before it is sent. ``quantity`` in base asset, ``price`` in
    quote asset (None for MARKET orders), as they will be sent (already filtered)."""

    client_order_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    type: str
    quantity: Decimal
    candle_open_ms: int
    leg: str
    price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class OrderRecord(NewOrder):
    """An order as recorded: the decision plus what the exchange said so far."""

    status: OrderStatus = S.PENDING_SUBMIT
    exchange_order_id: int | None = None
    executed_qty: Decimal = Decimal(0)
    cumulative_quote: Decimal = Decimal(0)
    reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True)
class Fill:
    """One trade of an order: price (quote per base), qty (base), commission in ``commission_asset``."""

    client_order_id: str
    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int


@dataclass(frozen=True)
class Funding:
    """A funding fee the exchange settled on a futures position: ``amount`` of ``asset`` the wallet received
    (> 0) or paid (< 0) at ``time_ms``; ``tran_id``: the exchange's transaction id (unique per kind)."""

    tran_id: int
    symbol: str
    asset: str
    amount: Decimal
    time_ms: int


@dataclass(frozen=True)
class Position:
    """Signed base-asset quantity (> 0 long, < 0 short) and average entry price (quote per base)."""

    symbol: str
    quantity: Decimal = Decimal(0)
    entry_price: Decimal | None = None
    updated_ms: int = 0


@dataclass(frozen=True)
class StepState:
    """The engine's per-candle state, opaque here: ``data`` bytes in the layout ``version`` names."""

    version: int
    data: bytes
    candle_open_ms: int


@dataclass(frozen=True)
class RiskState:
    """Risk counters that survive restarts. Equities in quote currency; ``day_start_ms``: the UTC
    day the daily loss is measured from."""

    day_start_ms: int | None = None
    day_start_equity: float | None = None
    peak_equity: float | None = None
    halted: bool = False
    halt_reason: str = ""


_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL, side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')), type TEXT NOT NULL,
    quantity TEXT NOT NULL, price TEXT, candle_open_ms INTEGER NOT NULL, leg TEXT NOT NULL,
    reduce_only INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('pending_submit', 'open', 'filled', 'cancelled', 'rejected', 'unknown')),
    exchange_order_id INTEGER, executed_qty TEXT NOT NULL DEFAULT '0', cumulative_quote TEXT NOT NULL DEFAULT '0',
    reason TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE INDEX orders_by_status ON orders (status);
CREATE INDEX orders_by_created ON orders (created_ms);
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
    from_status TEXT, to_status TEXT NOT NULL, at_ms INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE fills (
    client_order_id TEXT NOT NULL REFERENCES orders (client_order_id), trade_id INTEGER NOT NULL,
    price TEXT NOT NULL, qty TEXT NOT NULL, commission TEXT NOT NULL, commission_asset TEXT NOT NULL,
    time_ms INTEGER NOT NULL, PRIMARY KEY (client_order_id, trade_id)
);
CREATE TABLE positions (
    symbol TEXT PRIMARY KEY, quantity TEXT NOT NULL, entry_price TEXT, updated_ms INTEGER NOT NULL
);
CREATE TABLE step_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, data BLOB NOT NULL,
    candle_open_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE progress (
    id INTEGER PRIMARY KEY CHECK (id = 1), last_candle_open_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE risk (
    id INTEGER PRIMARY KEY CHECK (id = 1), day_start_ms INTEGER, day_start_equity REAL, peak_equity REAL,
    halted INTEGER NOT NULL DEFAULT 0, halt_reason TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL
);
""" + _FUNDING_TABLE + ";\n"
IDENTITY_KEYS = ("symbol", "interval", "market", "mode", "client_id_prefix")


def now_ms() -> int:
    """The wall clock, epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


def _dec(x: Any) -> str:
    d = x if isinstance(x, Decimal) else Decimal(str(x))
    if not d.is_finite():
        raise ValueError(f"{x!r} is not a finite number")
    s = format(d.normalize(), "f")
    return "0" if s == "-0" else s


def _order(row: sqlite3.Row) -> OrderRecord:
    return OrderRecord(
        client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"], type=row["type"],
        quantity=Decimal(row["quantity"]), price=None if row["price"] is None else Decimal(row["price"]),
        candle_open_ms=row["candle_open_ms"], leg=row["leg"], reduce_only=bool(row["reduce_only"]),
        status=OrderStatus(row["status"]), exchange_order_id=row["exchange_order_id"],
        executed_qty=Decimal(row["executed_qty"]), cumulative_quote=Decimal(row["cumulative_quote"]),
        reason=row["reason"], created_ms=row["created_ms"], updated_ms=row["updated_ms"])


class StateStore:
    """The state database. Open with ``StateStore(path, symbol=..., interval=..., market=..., mode=...,
    client_id_prefix=...)`` (creates the file and its folder when missing; refuses a file that belongs
    to another identity) or :meth:`from_settings`; read-only views with :meth:`open_readonly`.
    Every write method is one transaction. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, symbol: str, interval: str, market: str = "spot", mode: str = "paper",
                 client_id_prefix: str = "mlr", busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._readonly = False
        self._conn = self._connect(self.path, busy_timeout_s)
        identity = {"symbol": symbol, "interval": interval, "market": market, "mode": mode,
                    "client_id_prefix": client_id_prefix}
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._tx() as c:
                if c.execute("SELECT name FROM sqlite_master WHERE name='schema_version'").fetchone() is None:
                    for stmt in filter(str.strip, _SCHEMA.split(";")):  # not executescript: it would COMMIT
                        c.execute(stmt)
                    c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                    c.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in identity.items()])
                    c.execute("INSERT INTO risk (id, updated_ms) VALUES (1, ?)", (now_ms(),))
                else:
                    self._migrate(c)
        except StateError:
            self.close()
            raise
        except sqlite3.DatabaseError as e:
            self.close()
            raise StateError(f"state file {self.path} is not a usable SQLite database ({e}): "
                             "move it away or set MLRISK_STATE_FILE to another file") from None
        self._check_version()
        stored = self.identity()
        if stored != {k: str(v) for k, v in identity.items()}:
            theirs = " ".join(f"{k}={stored.get(k)}" for k in IDENTITY_KEYS)
            ours = " ".join(f"{k}={v}" for k, v in identity.items())
            self.close()
            raise StateError(f"state file {self.path} belongs to {theirs}, not {ours}: "
                             "set MLRISK_STATE_FILE to another file for a different bot")

    @classmethod
    def from_settings(cls, settings: Any, *, symbol: str, interval: str) -> "StateStore":
        """Open ``settings.state_file`` (a :class:`mlrisk.live.settings.LiveSettings`) for this bot.
        ``symbol``/``interval``: the resolved ones (the settings' or the model's)."""
        return cls(settings.state_file, symbol=symbol, interval=interval, market=settings.market,
                   mode=settings.mode, client_id_prefix=settings.client_id_prefix)

    @classmethod
    def open_readonly(cls, path: str | Path) -> "StateStore":
        """A read-only view (a dashboard, a test) that never blocks the bot's writes (WAL)."""
        if not Path(path).exists():
            raise StateError(f"state file {path} does not exist")
        self = cls.__new__(cls)
        self.path, self._readonly = Path(path), True
        self._conn = cls._connect(f"file:{Path(path).resolve()}?mode=ro", 5.0, uri=True)
        self._check_version()
        return self

    @staticmethod
    def _connect(target: Any, busy_timeout_s: float, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=busy_timeout_s, isolation_level=None, uri=uri,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _migrate(self, c: sqlite3.Connection) -> None:
        """Bring an older file up to :data:`SCHEMA_VERSION` with the :data:`MIGRATIONS` steps, inside
        the caller's transaction; a newer file is left for :meth:`_check_version` to refuse."""
        row = c.execute("SELECT version FROM schema_version").fetchone()
        if row is None or row[0] >= SCHEMA_VERSION:
            return
        for v in range(row[0], SCHEMA_VERSION):
            if v not in MIGRATIONS:
                raise StateError(f"state file {self.path} has schema version {row[0]} and this mlrisk has no "
                                 f"migration from version {v}: use another MLRISK_STATE_FILE")
            for stmt in MIGRATIONS[v]:
                c.execute(stmt)
        c.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION,))

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None or row[0] > SCHEMA_VERSION:
            v = None if row is None else row[0]
            self.close()
            raise StateError(f"state file {self.path} has schema version {v}; this mlrisk reads version "
                             f"{SCHEMA_VERSION}: upgrade mlrisk or use another MLRISK_STATE_FILE")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception)."""
        if self._readonly:
            raise StateError(f"state file {self.path} is open read-only")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator["StateStore"]:
        """Reads inside this block see one consistent state (one read transaction)."""
        self._conn.execute("BEGIN")
        try:
            self._conn.execute("SELECT 1 FROM progress LIMIT 1").fetchall()  # start the read now
            yield self
        finally:
            self._conn.execute("COMMIT")

    # ----------------------------------------------------------------------------- reads
    def identity(self) -> dict[str, str]:
        """The symbol, interval, market, mode and client id prefix the file belongs to."""
        return {r["key"]: r["value"] for r in self._conn.execute("SELECT key, value FROM meta")}

    def last_processed_candle(self) -> int | None:
        """Open time (ms UTC) of the last candle whose decision was committed, or None."""
        row = self._conn.execute("SELECT last_candle_open_ms FROM progress").fetchone()
        return None if row is None else row[0]

    def order(self, client_order_id: str) -> OrderRecord | None:
        row = self._conn.execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if row is None else _order(row)

    def orders(self, statuses: Iterable[OrderStatus | str] | None = None, candle_open_ms: int | None = None) -> list[OrderRecord]:
        """Orders (oldest first), optionally only those with these statuses / of this candle."""
        sql, args = "SELECT * FROM orders WHERE 1=1", []
        if statuses is not None:
            st = [OrderStatus(s).value for s in statuses]
            sql += f" AND status IN ({','.join('?' * len(st))})"
            args += st
        if candle_open_ms is not None:
            sql += " AND candle_open_ms=?"
            args.append(candle_open_ms)
        return [_order(r) for r in self._conn.execute(sql + " ORDER BY created_ms, rowid", args)]

    def orders_to_reconcile(self) -> list[OrderRecord]:
        """Orders whose exchange state must be checked: pending_submit (maybe sent before a crash),
        unknown and open."""
        return self.orders([S.PENDING_SUBMIT, S.UNKNOWN, S.OPEN])

    def events(self, client_order_id: str) -> list[tuple[str | None, str, str]]:
        """(from, to, detail) of every status change of an order, in order."""
        return [(r[0], r[1], r[2]) for r in self._conn.execute(
            "SELECT from_status, to_status, detail FROM order_events WHERE client_order_id=? ORDER BY id", (client_order_id,))]

    def fills(self, client_order_id: str | None = None) -> list[Fill]:
        sql, args = "SELECT * FROM fills", ()
        if client_order_id is not None:
            sql, args = sql + " WHERE client_order_id=?", (client_order_id,)
        return [Fill(r["client_order_id"], r["trade_id"], Decimal(r["price"]), Decimal(r["qty"]), Decimal(r["commission"]),
                     r["commission_asset"], r["time_ms"]) for r in self._conn.execute(sql + " ORDER BY time_ms, trade_id", args)]

    def funding(self, symbol: str | None = None) -> list[Funding]:
        """The funding fees recorded (of ``symbol``, or all), oldest first."""
        sql, args = "SELECT * FROM funding", ()
        if symbol is not None:
            sql, args = sql + " WHERE symbol=?", (symbol,)
        return [Funding(r["tran_id"], r["symbol"], r["asset"], Decimal(r["amount"]), r["time_ms"])
                for r in self._conn.execute(sql + " ORDER BY time_ms, tran_id", args)]

    def add_funding(self, rows: Iterable[Funding]) -> list[Funding]:
        """Record funding fees (one transaction); a known ``tran_id`` is skipped. Returns those that were new."""
        new: list[Funding] = []
        with self._tx() as c:
            for f in rows:
                if c.execute("INSERT OR IGNORE INTO funding VALUES (?,?,?,?,?)",
                             (f.tran_id, f.symbol, f.asset, _dec(f.amount), f.time_ms)).rowcount:
                    new.append(f)
        return new

    def position(self, symbol: str) -> Position:
        """The recorded position (flat when none was ever recorded)."""
        r = self._conn.execute("SELECT * FROM positions WHERE symbol=?", (symbol,)).fetchone()
        if r is None:
            return Position(symbol)
        return Position(symbol, Decimal(r["quantity"]), None if r["entry_price"] is None else Decimal(r["entry_price"]),
                        r["updated_ms"])

    def step_state(self) -> StepState | None:
        r = self._conn.execute("SELECT version, data, candle_open_ms FROM step_state").fetchone()
        return None if r is None else StepState(r[0], bytes(r[1]), r[2])

    def risk(self) -> RiskState:
        r = self._conn.execute("SELECT * FROM risk").fetchone()
        return RiskState(r["day_start_ms"], r["day_start_equity"], r["peak_equity"], bool(r["halted"]), r["halt_reason"])

    # ---------------------------------------------------------------------------- writes
    def _insert(self, c: sqlite3.Connection, o: NewOrder, at: int) -> None:
        if o.side not in ("BUY", "SELL"):
            raise ValueError(f"order {o.client_order_id}: side {o.side!r} must be BUY or SELL")
        if Decimal(o.quantity) <= 0:
            raise ValueError(f"order {o.client_order_id}: quantity {o.quantity} must be positive")
        existing = c.execute("SELECT status FROM orders WHERE client_order_id=?", (o.client_order_id,)).fetchone()
        if existing is not None:
            raise DuplicateOrder(f"order {o.client_order_id} is already recorded (status {existing[0]}): "
                                 "query it by client id instead of sending it again")
        c.execute("INSERT INTO orders (client_order_id, symbol, side, type, quantity, price, candle_open_ms, leg, "
                  "reduce_only, status, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                  (o.client_order_id, o.symbol, o.side, o.type, _dec(o.quantity), None if o.price is None else _dec(o.price),
                   o.candle_open_ms, o.leg, int(o.reduce_only), S.PENDING_SUBMIT.value, at, at))
        c.execute("INSERT INTO order_events (client_order_id, from_status, to_status, at_ms) VALUES (?,?,?,?)",
                  (o.client_order_id, None, S.PENDING_SUBMIT.value, at))

    def insert_order(self, order: NewOrder, at_ms: int | None = None) -> OrderRecord:
        """Write-ahead one order as ``pending_submit`` (call before sending it). Raises
        :class:`DuplicateOrder` when its client id is already recorded."""
        at = now_ms() if at_ms is None else at_ms
        with self._tx() as c:
            self._insert(c, order, at)
        return self.order(order.client_order_id)  # type: ignore[return-value]

    def commit_candle(self, candle_open_ms: int, orders: Iterable[NewOrder] = (), step_state: StepState | None = None,
                      risk: RiskState | None = None, at_ms: int | None = None) -> None:
        """Atomically: write-ahead the candle's ``orders``, save the engine's ``step_state`` and the
        ``risk`` counters, and mark the candle processed. Raises :class:`StateError` when the candle
        is not after the last processed one (a processed candle is never decided again) and
        :class:`DuplicateOrder` for a recorded client id; then nothing is written."""
        at = now_ms() if at_ms is None else at_ms
        with self._tx() as c:
            last = c.execute("SELECT last_candle_open_ms FROM progress").fetchone()
            if last is not None and candle_open_ms <= last[0]:
                raise StateError(f"candle {candle_open_ms} is not after the last processed candle {last[0]}: "
                                 "it was decided already and is not traded again")
            for o in orders:
                self._insert(c, o, at)
            if step_state is not None:
                self._save_step(c, step_state, at)
            if risk is not None:
                self._save_risk(c, risk, at)
            c.execute("INSERT INTO progress (id, last_candle_open_ms, updated_ms) VALUES (1, ?, ?) "
                      "ON CONFLICT (id) DO UPDATE SET last_candle_open_ms=excluded.last_candle_open_ms, "
                      "updated_ms=excluded.updated_ms", (candle_open_ms, at))

    def transition(self, client_order_id: str, status: OrderStatus | str, *, exchange_order_id: int | None = None,
                   executed_qty: Decimal | str | None = None, cumulative_quote: Decimal | str | None = None,
                   reason: str | None = None, fills: Iterable[Fill] = (), position: Position | None = None,
                   at_ms: int | None = None, insert: NewOrder | None = None, halt_reason: str | None = None) -> OrderRecord:
        """Move an order to ``status`` (an :class:`OrderStatus`; Binance's words are mapped by the venue),
        recording what the exchange said, its new ``fills`` (a known trade id is skipped) and, in the same
        transaction, the resulting ``position``. An order the exchange sent itself (a liquidation) is
        recorded whole in that one transaction: ``insert`` writes it first (as :meth:`insert_order`
        would, with ``client_order_id``), and ``halt_reason`` sets the halted flag (as :meth:`halt`);
        after a crash either all of it is there or none of it. Raises :class:`IllegalTransition` for a
        move the state machine forbids, :class:`StateError` for an unknown order and
        :class:`DuplicateOrder` for an ``insert`` already recorded; then nothing is written."""
        new = OrderStatus(status)
        at = now_ms() if at_ms is None else at_ms
        if insert is not None and insert.client_order_id != client_order_id:
            raise ValueError(f"insert {insert.client_order_id} is not order {client_order_id}")
        with self._tx() as c:
            if insert is not None:
                self._insert(c, insert, at)
            row = c.execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
            if row is None:
                raise StateError(f"order {client_order_id} is not recorded")
            old = OrderStatus(row["status"])
            if new not in TRANSITIONS[old]:
                raise IllegalTransition(f"order {client_order_id}: {old.value} -> {new.value} is not allowed")
            sets, args = ["status=?", "updated_ms=?"], [new.value, at]
            for col, val in (("exchange_order_id", exchange_order_id), ("reason", reason),
                             ("executed_qty", None if executed_qty is None else _dec(executed_qty)),
                             ("cumulative_quote", None if cumulative_quote is None else _dec(cumulative_quote))):
                if val is not None:
                    sets.append(f"{col}=?")
                    args.append(val)
            c.execute(f"UPDATE orders SET {', '.join(sets)} WHERE client_order_id=?", (*args, client_order_id))
            c.execute("INSERT INTO order_events (client_order_id, from_status, to_status, at_ms, detail) VALUES (?,?,?,?,?)",
                      (client_order_id, old.value, new.value, at, reason or ""))
            for f in fills:
                if f.client_order_id != client_order_id:
                    raise ValueError(f"fill {f.trade_id} belongs to {f.client_order_id}, not {client_order_id}")
                c.execute("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?)",
                          (f.client_order_id, f.trade_id, _dec(f.price), _dec(f.qty), _dec(f.commission), f.commission_asset, f.time_ms))
            if position is not None:
                self._save_position(c, position, at)
            if halt_reason is not None:
                self._set_halt(c, halt_reason, at)
        return self.order(client_order_id)  # type: ignore[return-value]

    def add_fills(self, client_order_id: str, fills: Iterable[Fill], position: Position | None = None,
                  at_ms: int | None = None) -> list[Fill]:
        """Record trades of an order whose status is settled already (its trades appeared later than its
        status: myTrades lags), and in the same transaction the resulting ``position``; a known trade id
        is skipped. Returns the fills that were new."""
        at = now_ms() if at_ms is None else at_ms
        new: list[Fill] = []
        with self._tx() as c:
            for f in fills:
                if f.client_order_id != client_order_id:
                    raise ValueError(f"fill {f.trade_id} belongs to {f.client_order_id}, not {client_order_id}")
                cur = c.execute("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?)",
                                (f.client_order_id, f.trade_id, _dec(f.price), _dec(f.qty), _dec(f.commission),
                                 f.commission_asset, f.time_ms))
                if cur.rowcount:
                    new.append(f)
            if new:
                c.execute("INSERT INTO order_events (client_order_id, from_status, to_status, at_ms, detail) "
                          "SELECT client_order_id, status, status, ?, ? FROM orders WHERE client_order_id=?",
                          (at, f"{len(new)} trade(s) recorded", client_order_id))
            if position is not None and new:
                self._save_position(c, position, at)
        return new

    def orders_missing_fills(self) -> list[OrderRecord]:
        """Orders whose executed quantity exceeds the quantity of their recorded trades (their trades lag
        the order's status), oldest first."""
        rows = self._conn.execute(
            "SELECT o.*, (SELECT group_concat(qty, ' ') FROM fills f WHERE f.client_order_id=o.client_order_id) AS fq "
            "FROM orders o WHERE o.executed_qty NOT IN ('0', '0.0') ORDER BY created_ms, rowid").fetchall()
        out = []
        for r in rows:
            got = sum((Decimal(x) for x in (r["fq"] or "").split()), Decimal(0))
            if Decimal(r["executed_qty"]) > got:
                out.append(_order(r))
        return out

    def first_exchange_ids(self) -> tuple[int | None, int | None, int | None]:
        """(the smallest exchange order id recorded, the smallest trade id recorded, the first order's
        write-ahead time in ms UTC): where the exchange's history of this state file begins."""
        r = self._conn.execute("SELECT (SELECT min(exchange_order_id) FROM orders), (SELECT min(trade_id) FROM fills), "
                               "(SELECT min(created_ms) FROM orders)").fetchone()
        return r[0], r[1], r[2]

    def revision(self, symbol: str) -> tuple[Any, ...]:
        """What changes whenever this file's record of the orders, their trades or ``symbol``'s position
        changes (any process writing the file): (last order event id, number of trades, the position's
        quantity and update time)."""
        return tuple(self._conn.execute(
            "SELECT (SELECT max(id) FROM order_events), (SELECT count(*) FROM fills), "
            "(SELECT quantity FROM positions WHERE symbol=?), (SELECT updated_ms FROM positions WHERE symbol=?)",
            (symbol, symbol)).fetchone())

    def save_step_state(self, step: StepState, at_ms: int | None = None) -> None:
        with self._tx() as c:
            self._save_step(c, step, now_ms() if at_ms is None else at_ms)

    def save_risk(self, risk: RiskState, at_ms: int | None = None) -> None:
        with self._tx() as c:
            self._save_risk(c, risk, now_ms() if at_ms is None else at_ms)

    def halt(self, reason: str, at_ms: int | None = None) -> RiskState:
        """Set the persisted halted flag (only reducing orders from now on, across restarts)."""
        with self._tx() as c:
            self._set_halt(c, reason, now_ms() if at_ms is None else at_ms)
        return self.risk()

    @staticmethod
    def _set_halt(c: sqlite3.Connection, reason: str, at: int) -> None:
        c.execute("UPDATE risk SET halted=1, halt_reason=?, updated_ms=?", (reason, at))

    @staticmethod
    def _save_position(c: sqlite3.Connection, p: Position, at: int) -> None:
        c.execute("INSERT INTO positions VALUES (?,?,?,?) ON CONFLICT (symbol) DO UPDATE SET quantity=excluded.quantity, "
                  "entry_price=excluded.entry_price, updated_ms=excluded.updated_ms",
                  (p.symbol, _dec(p.quantity), None if p.entry_price is None else _dec(p.entry_price), at))

    @staticmethod
    def _save_step(c: sqlite3.Connection, s: StepState, at: int) -> None:
        if not isinstance(s.data, (bytes, bytearray, memoryview)):
            raise TypeError("step state data must be bytes")
        c.execute("INSERT INTO step_state VALUES (1,?,?,?,?) ON CONFLICT (id) DO UPDATE SET version=excluded.version, "
                  "data=excluded.data, candle_open_ms=excluded.candle_open_ms, updated_ms=excluded.updated_ms",
                  (s.version, sqlite3.Binary(bytes(s.data)), s.candle_open_ms, at))

    @staticmethod
    def _save_risk(c: sqlite3.Connection, r: RiskState, at: int) -> None:
        c.execute("UPDATE risk SET day_start_ms=?, day_start_equity=?, peak_equity=?, halted=?, halt_reason=?, updated_ms=?",
                  (r.day_start_ms, r.day_start_equity, r.peak_equity, int(r.halted), r.halt_reason, at))


__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "TRANSITIONS", "OrderStatus", "NewOrder", "OrderRecord", "Fill", "Funding", "Position",
           "StepState", "RiskState", "StateStore", "StateError", "DuplicateOrder", "IllegalTransition", "now_ms"]
