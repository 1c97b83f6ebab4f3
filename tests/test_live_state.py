"""The SQLite state store: order state machine, write-ahead duplicates refused, atomic candle commits
that survive SIGKILL at any statement, WAL readers that never block the writer, no secrets."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal as D
from pathlib import Path

import pytest

from conftest import ROOT
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.state import (SCHEMA_VERSION, TRANSITIONS, DuplicateOrder, Fill, IllegalTransition,
                               NewOrder, OrderRecord, OrderStatus, Position, RiskState, StateError, StateStore, StepState)
from mlrisk.live.venue import BINANCE_STATUS  # Binance's words are the venue's: the store takes ours

S = OrderStatus
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
H = 3_600_000


def order(t: int = T0, leg: str = "entry", side: str = "BUY", qty: str = "0.001", price: str | None = None) -> NewOrder:
    return NewOrder(make_client_order_id("mlr", "BTCUSDT", t, leg), "BTCUSDT", side, "LIMIT" if price else "MARKET",  # type: ignore[arg-type]
                    D(qty), t, leg, None if price is None else D(price))


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path / "live" / "state.sqlite", symbol="BTCUSDT", interval="1h") as s:
        yield s


def test_fresh_file_schema_wal_and_identity(store, tmp_path):
    assert store.path.exists() and store.last_processed_candle() is None and store.step_state() is None
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [tuple(r) for r in store._conn.execute("SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]
    assert store.identity() == {"symbol": "BTCUSDT", "interval": "1h", "market": "spot", "mode": "paper", "client_id_prefix": "mlr"}
    assert store.risk() == RiskState() and store.position("BTCUSDT") == Position("BTCUSDT")
    store.close()
    with StateStore(store.path, symbol="BTCUSDT", interval="1h") as again:  # reopening is fine
        assert again.identity()["symbol"] == "BTCUSDT"


@pytest.mark.parametrize("change, word", [({"symbol": "ETHUSDT"}, "symbol=BTCUSDT"), ({"interval": "15m"}, "interval=1h"),
                                          ({"mode": "live"}, "mode=paper"), ({"market": "futures"}, "market=spot")])
def test_a_file_of_another_bot_is_refused(store, change, word):
    store.close()
    kw = {"symbol": "BTCUSDT", "interval": "1h", **change}
    with pytest.raises(StateError, match=word) as e:
        StateStore(store.path, **kw)
    assert "MLRISK_STATE_FILE" in str(e.value) and "\n" not in str(e.value)


def _older_file(path) -> None:
    """A state file as an older schema (version SCHEMA_VERSION - 1) left it: one order, written by hand."""
    with StateStore(path, symbol="BTCUSDT", interval="1h") as s:
        s.insert_order(order())
    with sqlite3.connect(path) as c:
        c.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION - 1,))
        c.execute("DROP INDEX orders_by_created")  # what the older schema lacked; its migration adds it


def test_an_older_schema_is_migrated_in_one_transaction_not_refused(tmp_path, monkeypatch):
    import mlrisk.live.state as mod

    path = tmp_path / "old.sqlite"
    _older_file(path)
    monkeypatch.setattr(mod, "MIGRATIONS", {SCHEMA_VERSION - 1: ("CREATE INDEX orders_by_created ON orders (created_ms)",)})
    with StateStore(path, symbol="BTCUSDT", interval="1h") as s:
        assert [tuple(r) for r in s._conn.execute("SELECT version FROM schema_version")] == [(SCHEMA_VERSION,)]
        assert s._conn.execute("SELECT 1 FROM sqlite_master WHERE name='orders_by_created'").fetchone() is not None
        assert [o.client_order_id for o in s.orders()] == [order().client_order_id]  # the data survive


def test_an_older_schema_without_its_migration_is_refused_and_left_as_it_was(tmp_path, monkeypatch):
    import mlrisk.live.state as mod

    path = tmp_path / "old.sqlite"
    _older_file(path)
    monkeypatch.setattr(mod, "MIGRATIONS", {SCHEMA_VERSION - 1: ("CREATE INDEX orders_by_created ON orders (created_ms)",
                                                                 "CREATE TABLE broken (")})  # fails mid-way
    with pytest.raises(StateError, match="not a usable SQLite database"):
        StateStore(path, symbol="BTCUSDT", interval="1h")
    monkeypatch.setattr(mod, "MIGRATIONS", {})
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION - 1} and this mlrisk has no migration"):
        StateStore(path, symbol="BTCUSDT", interval="1h")
    with sqlite3.connect(path) as c:  # the failed step rolled the whole migration back
        assert c.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION - 1
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name='orders_by_created'").fetchone() is None


def test_newer_schema_is_refused(store):
    store._conn.execute("UPDATE schema_version SET version=?", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1}"):
        StateStore(store.path, symbol="BTCUSDT", interval="1h")


def test_write_ahead_then_lifecycle_with_fills_and_position(store):
    o = order(price="40000.5")
    rec = store.insert_order(o, at_ms=T0 + 5)
    assert rec.status is S.PENDING_SUBMIT and rec.price == D("40000.5") and rec.created_ms == T0 + 5
    assert store.orders_to_reconcile() == [rec]
    store.transition(o.client_order_id, S.OPEN, exchange_order_id=42)
    part = Fill(o.client_order_id, 7, D("40000.5"), D("0.0004"), D("0.0000004"), "BTC", T0 + 10)
    r = store.transition(o.client_order_id, S.OPEN, executed_qty="0.0004", fills=[part],
                         position=Position("BTCUSDT", D("0.0003996"), D("40000.5")))
    assert r.status is S.OPEN and r.exchange_order_id == 42 and r.executed_qty == D("0.0004")
    rest = Fill(o.client_order_id, 8, D("40000.5"), D("0.0006"), D("0.0000006"), "BTC", T0 + 11)
    r = store.transition(o.client_order_id, S.FILLED, executed_qty="0.001", cumulative_quote="40.0005",
                         fills=[part, rest], position=Position("BTCUSDT", D("0.000999"), D("40000.5")))  # part again: ignored
    assert r.status is S.FILLED and r.cumulative_quote == D("40.0005")
    assert [f.trade_id for f in store.fills(o.client_order_id)] == [7, 8]
    assert sum(f.commission for f in store.fills()) == D("0.000001")
    assert store.position("BTCUSDT") == Position("BTCUSDT", D("0.000999"), D("40000.5"), r.updated_ms)
    assert [e[:2] for e in store.events(o.client_order_id)] == [(None, "pending_submit"), ("pending_submit", "open"),
                                                                ("open", "open"), ("open", "filled")]
    assert store.orders_to_reconcile() == []


ALL = list(OrderStatus)


@pytest.mark.parametrize("start", ALL)
@pytest.mark.parametrize("target", ALL)
def test_every_transition_follows_the_table(tmp_path, start, target):
    paths = {  # how to reach each start status from pending_submit
        S.PENDING_SUBMIT: [], S.OPEN: [S.OPEN], S.FILLED: [S.FILLED], S.CANCELLED: [S.CANCELLED],
        S.REJECTED: [S.REJECTED], S.UNKNOWN: [S.UNKNOWN],
    }
    with StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h") as s:
        o = order()
        s.insert_order(o)
        for st in paths[start]:
            s.transition(o.client_order_id, st)
        before = s.order(o.client_order_id)
        if target in TRANSITIONS[start]:
            assert s.transition(o.client_order_id, target).status is target
        else:
            with pytest.raises(IllegalTransition, match=f"{start.value} -> {target.value} is not allowed"):
                s.transition(o.client_order_id, target, executed_qty="1", reason="x")
            assert s.order(o.client_order_id) == before  # nothing changed


FINAL = {S.FILLED, S.CANCELLED, S.REJECTED}


def _through(s: StateStore, o: NewOrder, path: list) -> OrderRecord:
    s.insert_order(o)
    rec = s.order(o.client_order_id)
    for st in path:
        rec = s.transition(o.client_order_id, BINANCE_STATUS.get(st, st) if isinstance(st, str) else st)
    return rec


@pytest.mark.parametrize("final", sorted(FINAL, key=lambda x: x.value))
def test_a_final_order_accepts_no_change_at_all(store, final):
    o = order()
    _through(store, o, [final])
    assert final.final
    for target in ALL:  # not even a repeat of its own status: an old answer cannot reopen it
        with pytest.raises(IllegalTransition):
            store.transition(o.client_order_id, target)
    assert store.orders_to_reconcile() == []


def test_no_order_ever_goes_back_to_send(store):
    """pending_submit (send it) is reachable from nothing: an order the exchange answered for (open, or
    any final status) or that may have reached it (unknown) is never sent again (a filled order frees
    its client id on Binance, so a resend could fill twice)."""
    for i, via in enumerate([[S.OPEN], [S.OPEN, S.OPEN], [S.FILLED], [S.CANCELLED], [S.REJECTED], [], [S.UNKNOWN]]):
        o = order(T0 + i * H)
        _through(store, o, via)
        with pytest.raises(IllegalTransition, match="-> pending_submit is not allowed"):
            store.transition(o.client_order_id, S.PENDING_SUBMIT)


@pytest.mark.parametrize("binance", sorted(BINANCE_STATUS))
def test_every_binance_status_is_accepted_as_an_answer_to_a_send_or_a_query(tmp_path, binance):
    """Whatever Binance answers to a send (from pending_submit) or to a query of an unknown order,
    the store records it, as the mapped status."""
    for t, via in ((T0, []), (T0 + H, [S.UNKNOWN])):
        with StateStore(tmp_path / f"s{t}.sqlite", symbol="BTCUSDT", interval="1h") as s:
            o = order(t)
            _through(s, o, via)
            assert s.transition(o.client_order_id, BINANCE_STATUS[binance]).status is BINANCE_STATUS[binance]


@pytest.mark.parametrize("sequence", [
    ["NEW", "PARTIALLY_FILLED", "FILLED"],                    # a resting limit that fills in parts
    ["NEW", "CANCELED"], ["NEW", "EXPIRED"],                  # a limit entry expires / is cancelled
    ["FILLED"], ["REJECTED"],                                 # a market order answered at once / refused
    [S.UNKNOWN, "FILLED"],                                    # lost answer, found by the query
    [S.UNKNOWN, S.UNKNOWN, "NEW", "FILLED"],                  # the query failed too, then found it open
    [S.UNKNOWN, S.CANCELLED],                                 # absent at the bound, balances unchanged: not executed
    [S.CANCELLED],                                            # reconcile: a stale pending order
    ["NEW", S.UNKNOWN, "FILLED"],                             # a protective order's query lost
], ids=lambda seq: "-".join(str(getattr(x, "value", x)) for x in seq))
def test_the_brokers_sequences_are_accepted(store, sequence):
    o = order()
    rec = _through(store, o, sequence)
    last = sequence[-1]
    assert rec.status is (BINANCE_STATUS[last] if isinstance(last, str) and last in BINANCE_STATUS else last)
    assert [e[1] for e in store.events(o.client_order_id)][1:] == [
        (BINANCE_STATUS[x] if isinstance(x, str) and x in BINANCE_STATUS else x).value for x in sequence]


def test_unknown_order_and_unknown_status(store):
    with pytest.raises(StateError, match="not recorded"):
        store.transition("mlr-BTCUSDT-x-entry", S.FILLED)
    store.insert_order(order())
    with pytest.raises(ValueError):
        store.transition(order().client_order_id, "SOMETHING")


def test_the_same_client_id_is_refused_twice(store):
    o = order()
    store.insert_order(o)
    store.transition(o.client_order_id, S.FILLED)
    with pytest.raises(DuplicateOrder, match="already recorded \\(status filled\\)"):
        store.insert_order(o)
    with pytest.raises(DuplicateOrder):  # in a candle commit: nothing of that commit is written
        store.commit_candle(T0 + H, [order(T0 + H, "exit", "SELL"), o], StepState(1, b"x", T0 + H))
    assert store.last_processed_candle() is None and store.step_state() is None
    assert store.order(order(T0 + H, "exit").client_order_id) is None
    with pytest.raises(sqlite3.IntegrityError):  # and the database itself refuses it (primary key)
        store._conn.execute("INSERT INTO orders (client_order_id, symbol, side, type, quantity, candle_open_ms, leg, status, "
                            "created_ms, updated_ms) VALUES (?, 'BTCUSDT', 'BUY', 'MARKET', '1', 0, 'entry', 'open', 0, 0)",
                            (o.client_order_id,))


def test_commit_candle_is_atomic_and_never_reprocesses(store):
    store.commit_candle(T0, [order(T0)], StepState(3, b"\x00\x01state", T0), RiskState(T0, 1000.0, 1000.0))
    assert store.last_processed_candle() == T0 and store.step_state() == StepState(3, b"\x00\x01state", T0)
    assert store.risk() == RiskState(T0, 1000.0, 1000.0, False, "")
    for t in (T0, T0 - H):
        with pytest.raises(StateError, match="not after the last processed candle"):
            store.commit_candle(t, [order(t, "flat")])
    assert store.order(order(T0 - H, "flat").client_order_id) is None
    store.commit_candle(T0 + H)  # a candle that decides nothing is still marked
    assert store.last_processed_candle() == T0 + H and len(store.orders(candle_open_ms=T0)) == 1


def test_risk_counters_and_halt_persist(store):
    store.save_risk(RiskState(T0, 1000.0, 1100.0))
    store.halt("drawdown 21% > max_drawdown 20%")
    store.close()
    with StateStore(store.path, symbol="BTCUSDT", interval="1h") as s:
        assert s.risk() == RiskState(T0, 1000.0, 1100.0, True, "drawdown 21% > max_drawdown 20%")


def test_bad_values_are_refused(store):
    with pytest.raises(ValueError, match="must be positive"):
        store.insert_order(order(qty="0"))
    with pytest.raises(TypeError, match="bytes"):
        store.save_step_state(StepState(1, "text", T0))  # type: ignore[arg-type]
    ro = StateStore.open_readonly(store.path)
    with pytest.raises(StateError, match="read-only"):
        ro.insert_order(order())
    with pytest.raises(StateError, match="does not exist"):
        StateStore.open_readonly(store.path.with_name("nope.sqlite"))


# ------------------------------------------------------------------------------ crash safety
CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from decimal import Decimal as D
    from mlrisk.live.state import StateStore, NewOrder, StepState, RiskState
    path, kill_at = sys.argv[1], int(sys.argv[2])
    T = 1_700_002_800_000
    s = StateStore(path, symbol="BTCUSDT", interval="1h")
    seen = []
    def trace(stmt):
        seen.append(stmt)
        print(stmt.split()[0], flush=True)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)   # dies before this statement runs
    s._conn.set_trace_callback(trace)
    orders = [NewOrder(f"mlr-BTCUSDT-k-{leg}", "BTCUSDT", side, "MARKET", D("0.5"), T, leg)
              for leg, side in (("exit", "SELL"), ("entry", "BUY"))]
    s.commit_candle(T, orders, StepState(2, b"after", T), RiskState(T, 900.0, 1000.0))
    s._conn.set_trace_callback(None)
    print("DONE", flush=True)
""")


def _baseline(path: Path) -> None:
    with StateStore(path, symbol="BTCUSDT", interval="1h") as s:
        s.commit_candle(T0, [order(T0)], StepState(1, b"before", T0), RiskState(T0, 1000.0, 1000.0))


def _run(path: Path, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(path), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_sigkill_at_every_statement_of_a_candle_commit_leaves_all_or_nothing(tmp_path):
    full = _run(tmp_path / "probe.sqlite", 0)  # kill_at 0 = never: learn how many statements there are
    assert full.returncode == 0 and full.stdout.strip().endswith("DONE"), full.stderr
    n = len(full.stdout.split()) - 1
    assert full.stdout.split()[0] == "BEGIN" and full.stdout.split()[n - 1] == "COMMIT" and n >= 8
    outcomes = []
    for k in range(1, n + 2):  # n + 1: killed after the commit, at the next statement (there is none: not killed)
        path = tmp_path / f"k{k}" / "state.sqlite"
        _baseline(path)
        r = _run(path, k)
        killed = r.returncode == -signal.SIGKILL
        assert killed == (k <= n), (k, r.returncode, r.stderr)
        with StateStore(path, symbol="BTCUSDT", interval="1h") as s:
            assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            committed = s.last_processed_candle() == T0 + H
            new = [o.client_order_id for o in s.orders(candle_open_ms=T0 + H)]
            if committed:
                assert sorted(new) == ["mlr-BTCUSDT-k-entry", "mlr-BTCUSDT-k-exit"]
                assert s.step_state() == StepState(2, b"after", T0 + H) and s.risk().day_start_equity == 900.0
            else:
                assert new == [] and s.last_processed_candle() == T0
                assert s.step_state() == StepState(1, b"before", T0) and s.risk().day_start_equity == 1000.0
            assert [o.client_order_id for o in s.orders(candle_open_ms=T0)] == [order(T0).client_order_id]
            outcomes.append(committed)
    assert outcomes == [False] * n + [True]  # killed before COMMIT ran: nothing; after: everything


# --------------------------------------------------------------------------- concurrency (WAL)
def test_reader_never_blocks_the_writer_and_sees_consistent_snapshots(tmp_path):
    path = tmp_path / "state.sqlite"
    writer = StateStore(path, symbol="BTCUSDT", interval="1h", busy_timeout_s=0)  # would fail at once if blocked
    reader = StateStore.open_readonly(path)
    writer.commit_candle(T0, [order(T0, "entry"), order(T0, "tp", "SELL", price="50000")])
    with reader.snapshot():
        before = reader.last_processed_candle()
        writer.commit_candle(T0 + H, [order(T0 + H, "entry"), order(T0 + H, "tp", "SELL", price="50000")])  # no SQLITE_BUSY
        assert reader.last_processed_candle() == before == T0  # the open read sees its snapshot
        assert len(reader.orders()) == 2
    assert reader.last_processed_candle() == T0 + H and len(reader.orders()) == 4

    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            for i in range(2, 60):
                t = T0 + i * H
                writer.commit_candle(t, [order(t, "entry"), order(t, "tp", "SELL", price="50000")])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            stop.set()

    th = threading.Thread(target=write)
    th.start()
    checks = 0
    while not stop.is_set() or checks == 0:
        with reader.snapshot():
            last, n = reader.last_processed_candle(), len(reader.orders())
        assert n == 2 * ((last - T0) // H + 1)  # orders and the processed mark always move together
        checks += 1
    th.join()
    assert not errors and reader.last_processed_candle() == T0 + 59 * H
    writer.close()
    reader.close()


# -------------------------------------------------------------------------------- no secrets
def test_no_secret_reaches_the_state_files(tmp_path, monkeypatch):
    from mlrisk.live.settings import load_live_settings

    key, secret = "AbCdKeyNeverStored987", "ZyXwSecretNeverStored123"
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", key)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", secret)
    settings = load_live_settings(env_file=None, mode="testnet", state_file=str(tmp_path / "bot" / "state.sqlite"))
    with StateStore.from_settings(settings, symbol="BTCUSDT", interval="1h") as s:
        assert s.identity()["mode"] == "testnet"
        s.commit_candle(T0, [order(T0)], StepState(1, settings.model_dump_json().encode(), T0))
        s.transition(order(T0).client_order_id, S.FILLED, reason=str(settings))
        files = list((tmp_path / "bot").iterdir())
        blob = b"".join(f.read_bytes() for f in files)
    assert any(f.name.endswith("-wal") for f in files) or len(files) == 1
    assert b"testnet" in blob and b"BTCUSDT" in blob  # the grep does see what was written
    for text in (key, secret):
        assert text.encode() not in blob and text.encode("utf-16-le") not in blob


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    bad = tmp_path / "state.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="is not a usable SQLite database") as e:
        StateStore(bad, symbol="BTCUSDT", interval="1h")
    assert "\n" not in str(e.value) and bad.read_bytes() == b"this is not sqlite" * 100  # left as it was


# ------------------------------------------------------------------ stateful model check (hypothesis)
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402


class StoreAgainstModel(RuleBasedStateMachine):
    """Random sequences of candle commits, status changes, duplicate inserts and reopenings: the
    store always agrees with a plain-dict model of the rules."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.path = Path(tempfile.mkdtemp()) / "state.sqlite"
        self.store = StateStore(self.path, symbol="BTCUSDT", interval="1h")
        self.status: dict[str, OrderStatus] = {}
        self.last: int | None = None

    @rule(gap=st.integers(1, 3), legs=st.lists(st.sampled_from(["entry", "exit", "tp", "sl"]), unique=True, max_size=3))
    def commit(self, gap, legs):
        t = (self.last or T0) + gap * H
        self.store.commit_candle(t, [order(t, leg) for leg in legs], StepState(1, str(t).encode(), t))
        self.last = t
        self.status.update({order(t, leg).client_order_id: S.PENDING_SUBMIT for leg in legs})

    @rule(back=st.integers(0, 2))
    def recommit_is_refused(self, back):
        if self.last is not None:
            with pytest.raises(StateError):
                self.store.commit_candle(self.last - back * H, [order(self.last - back * H, "flat")])

    @rule(data=st.data(), to=st.sampled_from(list(OrderStatus)))
    def transition(self, data, to):
        if not self.status:
            return
        cid = data.draw(st.sampled_from(sorted(self.status)))
        if to in TRANSITIONS[self.status[cid]]:
            assert self.store.transition(cid, to).status is to
            self.status[cid] = to
        else:
            with pytest.raises(IllegalTransition):
                self.store.transition(cid, to)

    @rule(data=st.data())
    def duplicate_is_refused(self, data):
        if self.status:
            cid = data.draw(st.sampled_from(sorted(self.status)))
            o = self.store.order(cid)
            with pytest.raises(DuplicateOrder):
                self.store.insert_order(NewOrder(cid, o.symbol, o.side, o.type, o.quantity, o.candle_open_ms, o.leg))

    @rule()
    def reopen(self):
        self.store.close()
        self.store = StateStore(self.path, symbol="BTCUSDT", interval="1h")

    @invariant()
    def agrees(self):
        assert {o.client_order_id: o.status for o in self.store.orders()} == self.status
        assert self.store.last_processed_candle() == self.last
        assert {o.client_order_id for o in self.store.orders_to_reconcile()} == \
            {c for c, s in self.status.items() if not s.final}
        if self.last is not None:
            assert self.store.step_state() == StepState(1, str(self.last).encode(), self.last)

    def teardown(self):
        import shutil

        self.store.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


StoreAgainstModel.TestCase.settings = hsettings(max_examples=30, stateful_step_count=25, deadline=None)
test_store_against_model = StoreAgainstModel.TestCase
