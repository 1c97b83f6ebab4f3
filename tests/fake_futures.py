"""A Binance USDT-M *futures* exchange on 127.0.0.1 for the futures broker's tests: :class:`FakeExchange`'s
plumbing (signatures, timestamps, the fault schedule, request logs) with the ``/fapi`` endpoints.
Driven through the real python-binance client in ``tests/test_fake_futures.py``.
"""

from __future__ import annotations

import itertools
import time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fake_exchange import BTCUSDT_FUTURES, OPEN_STATUSES as OPEN, FakeExchange, _Reply

FUTURES_CLIENT_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:/_-")
ALGO_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
ALGO_OPEN = ("NEW", "TRIGGERING", "TRIGGERED")   # an algo order not final yet: its clientAlgoId is taken
#: https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
ERROR_CODES_URL = "https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
#: https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93
LIQUIDATION_PRICE_URL = "https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93"


def _s(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


def _sign(d: Decimal) -> int:
    return (d > 0) - (d < 0)



def _default_brackets(symbol: str) -> list[dict[str, Any]]:
    """``symbol``'s brackets from the backtest's dated snapshot, or one tier (MMR 0.004, cum 0)."""
    import json
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[1] / "src/mlrisk/backtest/leverage_brackets.json").read_text())
    for e in doc["leverageBracket"]:
        if e["symbol"] == symbol:
            return [dict(b) for b in e["brackets"]]
    return [{"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": 0.004,
             "cum": 0}]

class FakeFuturesExchange(FakeExchange):
    """One-way-mode USDT-M futures for one or more symbols (``with FakeFuturesExchange() as fx:``; a
    python-binance ``Client`` with ``client.FUTURES_URL = f"{fx.url}/fapi"``).

    Served: ``GET /fapi/v1/time``, ``/fapi/v1/exchangeInfo`` (BTCUSDT_FUTURES), ``/fapi/v1/klines``
    (FakeBinance's candles) and, signed (checked like :class:`FakeExchange`): ``POST/GET/DELETE
    /fapi/v1/order``, ``GET /fapi/v1/openOrders``, ``/fapi/v1/allOrders``, ``/fapi/v1/userTrades``,
    ``/fapi/v3/positionRisk`` (what python-binance 1.0.37 calls; like Binance's V3 it lists only symbols
    with a position or open orders, without ``marginType``/``leverage``), ``/fapi/v2/account`` (its
    ``positions`` carry ``isolated`` and ``leverage``),
    ``/fapi/v3/balance``, ``POST /fapi/v1/leverage``, ``POST /fapi/v1/marginType`` (-4046 "No need to
    change margin type." when unchanged), ``GET /fapi/v1/positionSide/dual`` (``dual_side``),
    ``POST/GET/DELETE /fapi/v1/algoOrder``, ``GET /fapi/v1/openAlgoOrders`` and ``/fapi/v1/income``;
    public ``GET /fapi/v1/premiumIndex`` and ``/fapi/v1/fundingRate`` (see "Mark price, funding and
    liquidation" below).

    Orders: MARKET fills in full at ``prices[symbol]`` paying ``taker_fee`` (USDT, on the notional);
    LIMIT (GTC) rests until :meth:`set_price` crosses it, then fills at its limit price paying
    ``maker_fee`` (a crossing LIMIT fills at once as a taker). ``reduceOnly`` orders that would open,
    increase or flip the position are refused (-2022); a client id of an open order cannot be used
    again (-4116); an entry whose initial margin (notional / leverage) exceeds the available balance
    is refused (-2019). ``newOrderRespType`` ACK (the default, as on Binance: status ``NEW``) or RESULT.
    Algo orders (STOP_MARKET / TAKE_PROFIT_MARKET with ``closePosition=true``) trigger when
    :meth:`set_price` reaches ``triggerPrice`` (a long's stop / a short's take-profit at or below it,
    the others at or above): the position is closed by a MARKET order at the trigger price (taker
    fee), recorded like any order with ``clientOrderId`` = the ``clientAlgoId``, and the algo order
    becomes ``FINISHED`` with ``actualOrderId``; one that triggers on a flat position expires.

    The position: signed ``positionAmt``, average ``entryPrice``, realised P&L (and fees) into the
    USDT wallet; isolated margin = notional at entry / leverage (plus the funding settled on it since the
    position opened). **Not modelled**: hedge-mode positions, partial fills, multi-assets mode, rate
    limits, the insurance fund (see :meth:`set_mark`).

    Mark price, funding and liquidation (:meth:`set_mark`, :meth:`set_funding`, :meth:`settle`):

    * **Mark price** per symbol, distinct from the last price: :meth:`set_mark` (None: it follows the
      last price, the default). Served where Binance serves it: ``GET /fapi/v1/premiumIndex`` ("Mark Price
      and Funding Rate", https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Mark-Price:
      ``markPrice``, ``indexPrice`` (= :attr:`index_prices`, default the mark), ``estimatedSettlePrice``
      (the mark), ``lastFundingRate`` (the rate the next settlement charges), ``interestRate`` (0.0001, the
      docs' example), ``nextFundingTime``, ``time``); ``positionRisk`` computes ``markPrice``,
      ``unRealizedProfit``, ``notional``, ``maintMargin`` and ``liquidationPrice`` on the mark (Position
      Information V3: "markPrice", "unRealizedProfit" of the mark), and the account/balance endpoints'
      unrealised P&L too. MARKET orders still fill at the last price.
    * **Funding**: at each funding time (multiples of :attr:`funding_interval_ms`, 8 h: 00:00, 08:00, 16:00
      UTC on the fake's clock ``server_ms()``, so moving ``clock_skew_ms`` past one settles it) every open
      position pays ``positionAmt × mark × rate`` (rate > 0: longs pay, shorts receive; the rate of
      :meth:`set_funding`, default 0) from the wallet, and from the isolated wallet of an isolated position.
      Settled lazily: at the next request, :meth:`set_price`/:meth:`set_mark` or user-stream poll after the
      clock passed the time (at the mark of that moment; the fake keeps no mark history). One schedule for
      every symbol; ``funding_jitter_ms`` (default 0) stamps the rows that many ms after the funding time
      (Binance's recorded ``fundingTime`` falls 1-29 ms after the hour, see ``shared/data/futures/README.md``).
      Each settlement adds a ``GET /fapi/v1/fundingRate`` row (Get Funding Rate History: ``symbol``, ``fundingRate``,
      ``fundingTime``, ``markPrice``; served with its paging by :class:`fake_binance.FakeBinance`) and, per position, a ``FUNDING_FEE`` row of ``GET /fapi/v1/income`` (Get Income History,
      https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Get-Income-History:
      ``symbol``, ``incomeType``, ``income``, ``asset``, ``info``, ``time``, ``tranId``, ``tradeId``; also
      ``REALIZED_PNL`` and ``COMMISSION`` rows of each trade; ``startTime``/``endTime`` inclusive, "If neither
      startTime nor endTime is sent, the recent 7-day data will be returned", limit default 100, max 1000).
      A rate of 0 settles (a fundingRate row) without an income row.
    * **Liquidation** on the mark price: when the mark reaches a position's liquidation price (isolated:
      WB = the isolated wallet, TMM = UPNL = 0; cross: WB = the wallet, TMM/UPNL of the other symbols),
      ``LP = (WB - TMM + UPNL + cum - side × |amt| × EP) / (|amt| × MMR - side × |amt|)`` (Binance's formula,
      :data:`LIQUIDATION_PRICE_URL`), with the maintenance tiers of :attr:`brackets` (per symbol, ``/fapi/v1/leverageBracket`` rows;
      default BTCUSDT's from the dated snapshot the backtest ships, ``src/mlrisk/backtest/leverage_brackets.json``;
      other symbols one tier MMR 0.004, cum 0): the tier holding the position's entry notional gives MMR and cum
      for the liquidation price, as in the backtest (Binance's FAQ re-tiers at the liquidation price; the two differ
      only within a liquidation distance of a tier floor); maintenance margin = notional at the mark × MMR - cum of
      the tier holding that notional. ``GET /fapi/v1/leverageBracket`` serves them (Notional and Leverage Brackets,
      https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets:
      a list of ``{symbol, notionalCoef, brackets}``, "OR (if symbol sent)" that object alone;
      :attr:`brackets_as_list` answers a list even then). The position is closed by :meth:`liquidate_at` (a MARKET
      order of type ``LIQUIDATION``, client id ``autoclose-<ms>``, taker fee), at the liquidation price
      rounded to the tick (Binance closes at the bankruptcy price and keeps the rest of the margin for its
      insurance fund: the fake's loss is smaller by about the maintenance margin). Checked at each
      :meth:`set_mark`, :meth:`set_price` (while the mark follows it) and after each funding settlement;
      the last price alone never liquidates while a mark is set.

    Every answer has the keys and JSON types of Binance's documented example (``tests/binance_docs/``,
    checked by ``tests/test_venue_contract.py``).

    Documented behaviours (off by default; see :class:`FakeExchange` for the shared ones): ``algo_lag_ms``
    (a triggered algo order is TRIGGERING with ``actualOrderId`` "" for that long, then TRIGGERED, then
    FINISHED), ``algo_reject`` (it ends REJECTED, no actual order, the position stays),
    ``order_retention`` (order query/allOrders forget CANCELED/EXPIRED orders with no fill after 3 days
    and every order after 90: -2013), ``trade_window`` (userTrades: the last 7 days by default, a range
    of at most 7 days), ``position_lag_ms``; order placement answers futures' documented codes (-4164,
    -4014, -1111, -4004/-4005/-4023, -4013, -4003, -2019, -4116) and -4130 for a second closePosition
    algo order with the same side and type.
    """

    ROUTES = {**FakeExchange.ROUTES,
              ("GET", "/fapi/v1/time"): ("_time", False), ("GET", "/fapi/v1/exchangeInfo"): ("_exchange_info", False),
              ("POST", "/fapi/v1/order"): ("_f_new_order", True), ("GET", "/fapi/v1/order"): ("_f_query_order", True),
              ("DELETE", "/fapi/v1/order"): ("_f_cancel_order", True),
              ("GET", "/fapi/v1/openOrders"): ("_f_open_orders", True), ("GET", "/fapi/v1/allOrders"): ("_f_all_orders", True),
              ("GET", "/fapi/v1/userTrades"): ("_f_user_trades", True),
              ("GET", "/fapi/v3/positionRisk"): ("_f_position_risk", True),
              ("GET", "/fapi/v2/account"): ("_f_account", True), ("GET", "/fapi/v3/balance"): ("_f_balance", True),
              ("POST", "/fapi/v1/leverage"): ("_f_leverage", True), ("POST", "/fapi/v1/marginType"): ("_f_margin_type", True),
              ("GET", "/fapi/v1/positionSide/dual"): ("_f_position_mode", True),
              ("POST", "/fapi/v1/algoOrder"): ("_f_new_algo", True), ("GET", "/fapi/v1/algoOrder"): ("_f_query_algo", True),
              ("DELETE", "/fapi/v1/algoOrder"): ("_f_cancel_algo", True),
              ("GET", "/fapi/v1/openAlgoOrders"): ("_f_open_algos", True),
              ("GET", "/fapi/v1/premiumIndex"): ("_f_premium_index", False),
              ("GET", "/fapi/v1/income"): ("_f_income", True),
              ("GET", "/fapi/v1/leverageBracket"): ("_f_leverage_bracket", True)}

    def __init__(self, *, symbols: tuple[dict[str, Any], ...] = (BTCUSDT_FUTURES,), wallet: str = "10000",
                 taker_fee: str = "0.0005", maker_fee: str = "0.0002", leverage: int = 20, margin_type: str = "cross",
                 dual_side: bool = False, prices: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(symbols=symbols, taker_fee=taker_fee, maker_fee=maker_fee, prices=prices,
                         balances={"USDT": wallet}, **kw)
        self.wallet = Decimal(wallet)
        self.leverage = {s["symbol"]: leverage for s in symbols}
        self.margin_type = {s["symbol"]: margin_type for s in symbols}
        self.dual_side = dual_side
        self.positions: dict[str, list[Decimal]] = {s["symbol"]: [Decimal(0), Decimal(0)] for s in symbols}  # amt, entry
        self.algos: list[dict[str, Any]] = []
        # Documented behaviours, off by default (lags in ms of server_ms(), like FakeExchange's):
        self.algo_lag_ms = 0          # a triggered algo order is TRIGGERING this long, then TRIGGERED this long, then FINISHED
        self.algo_reject = False      # a triggered algo order ends REJECTED (margin check), no actual order
        self.order_retention = False  # query/allOrders forget final unfilled orders after 3 days, every order after 90
        self.trade_window = False     # userTrades: the last 7 days by default, startTime-endTime at most 7 days
        self._pos_log: list[tuple[int, str, Decimal, Decimal]] = []   # (time, symbol, amt, entry) before each fill
        # Mark price, funding, liquidation (see the class docstring)
        self.marks: dict[str, Decimal | None] = {s["symbol"]: None for s in symbols}   # None: the last price
        self.index_prices: dict[str, Decimal | None] = {s["symbol"]: None for s in symbols}   # None: the mark
        self.funding_rates: dict[str, Decimal] = {s["symbol"]: Decimal(0) for s in symbols}
        self.funding_interval_ms = 8 * HOUR_MS
        self.funding_jitter_ms = 0     # the rows' time: this many ms after the funding time
        self.brackets: dict[str, list[dict[str, Any]]] = {s["symbol"]: _default_brackets(s["symbol"]) for s in symbols}
        self.brackets_as_list = False  # answer leverageBracket with a list even when a symbol is sent
        for sym in self.positions:   # GET /fapi/v1/fundingRate rows (served by FakeBinance), oldest first
            self.funding.setdefault(sym, [])
        self.income: list[dict[str, Any]] = []            # GET /fapi/v1/income rows, oldest first
        self.liquidations: list[dict[str, Any]] = []      # the orders that liquidated a position
        self._iso_funding: dict[str, Decimal] = {s["symbol"]: Decimal(0) for s in symbols}  # funding on isolated wallets
        self._tran_ids = itertools.count(9_689_322_392)
        self._next_funding = self._funding_after(self.server_ms())

    # ------------------------------------------------------------------ test controls
    ORDER_PATH = "/fapi/v1/order"

    def _documented_switches(self, rng: Any, lag_ms: int) -> dict[str, Any]:
        out = {k: v for k, v in super()._documented_switches(rng, lag_ms).items() if k not in ("partial_expired", "archived", "lookup_window")}

        def set_(attr: str, value: Any) -> Any:
            return lambda: (setattr(self, attr, value), value)[1]

        out.update(position_lag=set_("position_lag_ms", lag_ms), algo_lag=set_("algo_lag_ms", lag_ms),
                   algo_reject=set_("algo_reject", True), forgotten=set_("order_retention", True),
                   trade_window=set_("trade_window", True))
        return out

    def position(self, symbol: str = "BTCUSDT") -> tuple[Decimal, Decimal]:
        """(signed quantity, average entry price)."""
        with self._xlock:
            amt, entry = self.positions[symbol]
            return amt, entry

    def set_price(self, symbol: str, price: Any) -> list[dict[str, Any]]:
        """Move the market: resting LIMIT orders it crosses fill at their price (maker), then algo orders
        it reaches trigger (see the class docstring). Returns the orders filled."""
        with self._xlock:
            done = self._settle_funding()
            p = self.prices[symbol] = Decimal(str(price))
            for o in self.orders:
                if o["symbol"] == symbol and o["status"] in OPEN and (
                        (o["side"] == "BUY" and p <= o["price"]) or (o["side"] == "SELL" and p >= o["price"])):
                    self._f_fill(o, o["price"], self.maker_fee, maker=True)
                    done.append(o)
            for a in list(self.algos):
                if a["symbol"] != symbol or a["algoStatus"] != "NEW":
                    continue
                trig = a["triggerPrice"]
                below = (a["orderType"] == "STOP_MARKET") == (a["side"] == "SELL")  # long stop / short take-profit
                if (below and p <= trig) or (not below and p >= trig):
                    done.extend(self._trigger(a))
            if self.marks[symbol] is None:
                done.extend(self._check_liquidation(symbol))
            return done

    # ------------------------------------------------------------------ mark price, funding, liquidation
    def mark(self, symbol: str = "BTCUSDT") -> Decimal:
        """The mark price (USDT): the one set by :meth:`set_mark`, else the last price."""
        m = self.marks[symbol]
        return self.prices[symbol] if m is None else m

    def set_mark(self, symbol: str, price: Any) -> list[dict[str, Any]]:
        """Set the mark price (None: follow the last price again); settles due funding first, then
        liquidates the position when the mark reached its liquidation price. Returns the orders filled."""
        with self._xlock:
            done = self._settle_funding()
            self.marks[symbol] = None if price is None else Decimal(str(price))
            return done + self._check_liquidation(symbol)

    def set_funding(self, symbol: str, rate: Any, interval_ms: int | None = None, next_ms: int | None = None) -> None:
        """The rate the next settlements charge (per funding interval, e.g. 0.0001 = 0.01 %); ``interval_ms``:
        a new schedule (multiples of it since the epoch; Binance moves some symbols to 4 h or 1 h); ``next_ms``:
        the next funding time (``server_ms()`` ms; then every interval after it), e.g. now for a settlement at
        the next request."""
        with self._xlock:
            self._settle_funding()
            self.funding_rates[symbol] = Decimal(str(rate))
            if interval_ms is not None:
                self.funding_interval_ms = int(interval_ms)
                self._next_funding = self._funding_after(self.server_ms())
            if next_ms is not None:
                self._next_funding = int(next_ms)

    def settle(self) -> list[dict[str, Any]]:
        """Settle every funding time the clock has passed (what any request does first); returns the
        orders of liquidations it caused."""
        with self._xlock:
            return self._settle_funding()

    def liquidation_price(self, symbol: str = "BTCUSDT") -> Decimal:
        """The position's liquidation price (USDT; 0 when flat or when the formula gives <= 0, as Binance shows
        "--"), see the class docstring."""
        amt, entry = self.positions[symbol]
        if amt == 0:
            return Decimal(0)
        side, size = _sign(amt), abs(amt)
        mmr, cum = self._tier(symbol, size * entry)
        if self.margin_type[symbol] == "isolated":
            wb, tmm, upnl = self._iso_wallet(symbol), Decimal(0), Decimal(0)
        else:
            others = [s for s in self.positions if s != symbol and self.margin_type[s] != "isolated"]
            wb = self.wallet - sum((self._iso_wallet(s) for s in self.positions if self.margin_type[s] == "isolated"),
                                   Decimal(0))
            tmm = sum((self._maint(s) for s in others), Decimal(0))
            upnl = sum((self._upnl(s) for s in others), Decimal(0))
        lp = (wb - tmm + upnl + cum - side * size * entry) / (size * mmr - side * size)
        return max(lp, Decimal(0))

    def _maint(self, symbol: str) -> Decimal:
        """Maintenance margin = notional (at the mark) × MMR - maintenance amount (0 when flat)."""
        amt = self.positions[symbol][0]
        if not amt:
            return Decimal(0)
        notional = abs(amt) * self.mark(symbol)
        mmr, cum = self._tier(symbol, notional)
        return max(notional * mmr - cum, Decimal(0))

    def _tier(self, symbol: str, notional: Decimal) -> tuple[Decimal, Decimal]:
        """(MMR, cum) of the bracket holding ``notional`` (USDT): the last one whose notionalFloor <= it."""
        rows = sorted(self.brackets[symbol], key=lambda b: Decimal(str(b["notionalFloor"])))
        tier = [b for b in rows if Decimal(str(b["notionalFloor"])) <= notional][-1]
        return Decimal(str(tier["maintMarginRatio"])), Decimal(str(tier["cum"]))

    def _iso_wallet(self, symbol: str) -> Decimal:
        """An isolated position's wallet: its initial margin at entry plus the funding settled on it."""
        amt, entry = self.positions[symbol]
        return abs(amt) * entry / self.leverage[symbol] + self._iso_funding[symbol] if amt else Decimal(0)

    def _check_liquidation(self, symbol: str) -> list[dict[str, Any]]:
        amt = self.positions[symbol][0]
        if amt == 0:
            return []
        lp, mark = self.liquidation_price(symbol), self.mark(symbol)
        if lp <= 0 or (mark > lp if amt > 0 else mark < lp):
            return []
        info = self.symbols[symbol]
        tick = Decimal(next(f for f in info["filters"] if f["filterType"] == "PRICE_FILTER")["tickSize"])
        return [self.liquidate_at(symbol, (lp / tick).to_integral_value(ROUND_HALF_EVEN) * tick if tick else lp)]

    def liquidate_at(self, symbol: str, price: Decimal) -> dict[str, Any]:
        """Close the whole position as Binance's liquidation does: a MARKET order of type ``LIQUIDATION`` with
        client id ``autoclose-<ms>``, filled at ``price`` (taker fee). Returns the order (internal form)."""
        amt = self.positions[symbol][0]
        o = self._make_order(symbol, "SELL" if amt > 0 else "BUY", "LIQUIDATION", abs(amt), None,
                             f"autoclose-{self.server_ms()}", True, "IOC")
        self._f_fill(o, price, self.taker_fee, maker=False)
        self.liquidations.append(o)
        return o

    def _funding_after(self, ms: int) -> int:
        """The first funding time after ``ms`` (epoch ms)."""
        return (ms // self.funding_interval_ms + 1) * self.funding_interval_ms

    def _settle_funding(self) -> list[dict[str, Any]]:
        """Every funding time the clock has passed: the history row, each position's fee (see the class
        docstring), then the liquidations a fee caused."""
        done: list[dict[str, Any]] = []
        now = self.server_ms()
        while now >= self._next_funding:
            at = self._next_funding + self.funding_jitter_ms
            self._next_funding += self.funding_interval_ms
            for sym in self.positions:
                rate, mark = self.funding_rates[sym], self.mark(sym)
                self.funding[sym].append({"symbol": sym, "fundingRate": f"{rate:.8f}", "fundingTime": at,
                                             "markPrice": f"{mark:.8f}"})
                amt = self.positions[sym][0]
                fee = (-amt * mark * rate).quantize(Decimal("0.00000001"))
                if amt == 0 or fee == 0:
                    continue
                self.wallet += fee
                if self.margin_type[sym] == "isolated":
                    self._iso_funding[sym] += fee
                self.income.append({"symbol": sym, "incomeType": "FUNDING_FEE", "income": f"{fee:.8f}", "asset": "USDT",
                                    "info": "FUNDING_FEE", "time": at, "tranId": next(self._tran_ids), "tradeId": ""})
            for sym in self.positions:
                done.extend(self._check_liquidation(sym))
        return done

    def orders_with_client_id(self, cid: str) -> list[dict[str, Any]]:
        with self._xlock:
            return [o for o in self.orders if o["clientOrderId"] == cid] + [a for a in self.algos if a["clientAlgoId"] == cid]

    def _answer(self, *args: Any, **kw: Any) -> Any:
        with self._xlock:
            self._settle_funding()
            self._advance_algos()
        return super()._answer(*args, **kw)

    def _route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        """The public market-data routes (FakeBinance's: klines, fundingRate, ...), after the settlements due."""
        with self._xlock:
            self._settle_funding()
            return super()._route(path, q)

    # ------------------------------------------------------------------ helpers
    def _avail(self, symbol: str | None = None) -> Decimal:
        """Wallet minus the isolated margin of the positions and of open orders that add to them."""
        used = Decimal(0)
        for sym, (amt, entry) in self.positions.items():
            used += self._iso_wallet(sym) if self.margin_type[sym] == "isolated" else abs(amt) * entry / self.leverage[sym]
        for o in self.orders:
            if o["status"] in OPEN and not o["reduceOnly"]:
                used += o["origQty"] * o["price"] / self.leverage[o["symbol"]]
        return self.wallet - used

    def _upnl(self, symbol: str) -> Decimal:
        """Unrealised P&L on the mark price (USDT)."""
        amt, entry = self.positions[symbol]
        return amt * (self.mark(symbol) - entry)

    def _check_reduce(self, symbol: str, side: str, qty: Decimal) -> None:
        amt = self.positions[symbol][0]
        s = 1 if side == "BUY" else -1
        if amt == 0 or _sign(amt) == s or qty > abs(amt):
            raise _Reply(400, -2022, "ReduceOnly Order is rejected.")

    def _f_fill(self, o: dict[str, Any], price: Decimal, fee_rate: Decimal, maker: bool) -> None:
        sym = o["symbol"]
        qty = o["origQty"] - o["executedQty"]
        s = 1 if o["side"] == "BUY" else -1
        amt, entry = self.positions[sym]
        self._pos_log.append((self.server_ms(), sym, amt, entry))
        realized = Decimal(0)
        if amt == 0 or _sign(amt) == s:
            new_amt = amt + s * qty
            entry = (abs(amt) * entry + qty * price) / abs(new_amt)
        else:
            closing = min(qty, abs(amt))
            realized = closing * (price - entry) * _sign(amt)
            new_amt = amt + s * qty
            entry = Decimal(0) if new_amt == 0 else (entry if _sign(new_amt) == _sign(amt) else price)
        if new_amt == 0 or _sign(new_amt) != _sign(amt):   # closed or flipped: the funding stays in the wallet
            self._iso_funding[sym] = Decimal(0)
        self.positions[sym] = [new_amt, entry]
        commission = (qty * price * fee_rate).quantize(Decimal("0.00000001"))
        self.wallet += realized - commission
        trade_id, now = next(self._trade_ids), self.server_ms()
        for kind, amount in (("REALIZED_PNL", realized), ("COMMISSION", -commission)):
            if amount:
                self.income.append({"symbol": sym, "incomeType": kind, "income": f"{amount:.8f}", "asset": "USDT",
                                    "info": kind, "time": now, "tranId": next(self._tran_ids), "tradeId": str(trade_id)})
        self.trades.append({"symbol": sym, "id": trade_id, "orderId": o["orderId"], "side": o["side"], "price": _s(price),
                            "qty": _s(qty), "realizedPnl": _s(realized), "quoteQty": _s(qty * price),
                            "commission": _s(commission), "commissionAsset": "USDT", "time": now, "positionSide": "BOTH",
                            "buyer": s == 1, "maker": maker})
        o["executedQty"] += qty
        o["cumQuote"] += qty * price
        o["avgPrice"] = o["cumQuote"] / o["executedQty"]
        o["status"], o["updateTime"] = "FILLED", now

    def _trigger(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        now = self.server_ms()
        a["updateTime"] = a["triggerTime"] = now
        if self.algo_lag_ms or self.algo_reject:
            a["algoStatus"] = "TRIGGERING"
            self.fired["algo_lag" if self.algo_lag_ms else "algo_reject"] += 1
            return self._advance_algos()
        return self._place_actual(a)

    def _advance_algos(self) -> list[dict[str, Any]]:
        """Move triggered algo orders on (Binance's algo statuses, "Event: Algo Order Update",
        https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Algo-Order-Update):
        TRIGGERING ("met the triggering condition and has been forwarded to the matching engine": no actual
        order yet, ``actualOrderId`` "") for ``algo_lag_ms``; then REJECTED ("denied by the matching engine, such
        as in scenarios of margin check failures") with ``algo_reject``, else the actual order is placed and
        TRIGGERED ("successfully placed into the matching engine") for ``algo_lag_ms``, then FINISHED."""
        now, done = self.server_ms(), []
        for a in self.algos:
            if a["algoStatus"] == "TRIGGERING" and now >= a["triggerTime"] + self.algo_lag_ms:
                if self.algo_reject:
                    a["algoStatus"], a["updateTime"] = "REJECTED", now
                    continue
                done.extend(self._place_actual(a))
                if a["algoStatus"] == "FINISHED" and self.algo_lag_ms:
                    a["algoStatus"] = "TRIGGERED"
            if a["algoStatus"] == "TRIGGERED" and now >= a["triggerTime"] + 2 * self.algo_lag_ms:
                a["algoStatus"], a["updateTime"] = "FINISHED", now
        return done

    def _place_actual(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        sym = a["symbol"]
        amt = self.positions[sym][0]
        now = self.server_ms()
        a["updateTime"] = now
        if amt == 0 or _sign(amt) == (1 if a["side"] == "BUY" else -1):
            a["algoStatus"] = "EXPIRED"
            return []
        o = self._make_order(sym, a["side"], "MARKET", abs(amt), None, a["clientAlgoId"], True, "GTC")
        o["closePosition"], o["origType"], o["stopPrice"] = True, a["orderType"], a["triggerPrice"]
        self._f_fill(o, a["triggerPrice"], self.taker_fee, maker=False)
        a["algoStatus"], a["actualOrderId"] = "FINISHED", str(o["orderId"])
        a["actualPrice"], a["executedQty"] = o["avgPrice"], o["executedQty"]
        return [o]

    def _make_order(self, sym: str, side: str, otype: str, qty: Decimal, price: Decimal | None, cid: str, reduce: bool,
                    tif: str) -> dict[str, Any]:
        now = self.server_ms()
        o = {"symbol": sym, "orderId": next(self._ids), "clientOrderId": cid, "price": price or Decimal(0),
             "origQty": qty, "executedQty": Decimal(0), "cumQuote": Decimal(0), "avgPrice": Decimal(0), "status": "NEW",
             "timeInForce": tif, "type": otype, "origType": otype, "side": side, "reduceOnly": reduce,
             "closePosition": False, "stopPrice": Decimal(0), "time": now, "updateTime": now}
        self.orders.append(o)
        return o

    @staticmethod
    def _f_view(o: dict[str, Any]) -> dict[str, Any]:
        """The order as ``GET /fapi/v1/order`` shows it."""
        return {"avgPrice": _s(o["avgPrice"]), "clientOrderId": o["clientOrderId"], "cumQuote": _s(o["cumQuote"]),
                "executedQty": _s(o["executedQty"]), "orderId": o["orderId"], "origQty": _s(o["origQty"]),
                "origType": o["origType"], "price": _s(o["price"]), "reduceOnly": o["reduceOnly"], "side": o["side"],
                "positionSide": "BOTH", "status": o["status"], "stopPrice": _s(o["stopPrice"]),
                "closePosition": o["closePosition"], "symbol": o["symbol"], "time": o["time"],
                "timeInForce": o["timeInForce"], "type": o["type"], "updateTime": o["updateTime"],
                "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0}

    @classmethod
    def _f_answer_view(cls, o: dict[str, Any], cancel: bool = False) -> dict[str, Any]:
        """The order as ``POST`` (``cancel``: ``DELETE``) ``/fapi/v1/order`` answers: the query's fields
        with ``cumQty`` and without ``time`` (a cancel also without ``avgPrice``), as Binance documents them."""
        out = {k: v for k, v in cls._f_view(o).items() if k != "time" and not (cancel and k == "avgPrice")}
        out["cumQty"] = out["executedQty"]
        return out

    @staticmethod
    def _a_view(a: dict[str, Any]) -> dict[str, Any]:
        """An algo order as ``GET /fapi/v1/algoOrder`` and ``/fapi/v1/openAlgoOrders`` show it."""
        return {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "algoType": "CONDITIONAL",
                "orderType": a["orderType"], "symbol": a["symbol"], "side": a["side"], "positionSide": "BOTH",
                "timeInForce": "GTC", "quantity": "0", "algoStatus": a["algoStatus"], "actualOrderId": a["actualOrderId"],
                "actualPrice": _s(a["actualPrice"]), "triggerPrice": _s(a["triggerPrice"]), "price": "0",
                "icebergQuantity": None, "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0", "slPrice": "0",
                "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE",
                "priceMatch": "NONE", "closePosition": True, "priceProtect": False, "reduceOnly": True,
                "createTime": a["createTime"], "updateTime": a["updateTime"], "triggerTime": a["triggerTime"],
                "goodTillDate": 0, "executedQty": _s(a["executedQty"])}

    @classmethod
    def _a_answer_view(cls, a: dict[str, Any]) -> dict[str, Any]:
        """An algo order as ``POST /fapi/v1/algoOrder`` answers: no actual order or TP/SL fields yet,
        ``activatePrice``/``callbackRate`` (empty but for trailing stops)."""
        drop = {"actualOrderId", "actualPrice", "executedQty", "tpTriggerPrice", "tpPrice", "slTriggerPrice", "slPrice",
                "tpOrderType"}
        return {**{k: v for k, v in cls._a_view(a).items() if k not in drop}, "activatePrice": "", "callbackRate": ""}

    @staticmethod
    def _f_check_filters(info: dict[str, Any], otype: str, qty: Decimal, price: Decimal | None, mkt: Decimal,
                         reduce: bool) -> None:
        """The order filters with futures' own codes and messages (not spot's -1013 "Filter failure"), from
        https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code: -4003
        QTY_LESS_THAN_ZERO, -1111 BAD_PRECISION (more decimals than ``quantityPrecision``/``pricePrecision``),
        -4013 PRICE_LESS_THAN_MIN_PRICE, -4014 PRICE_NOT_INCREASED_BY_TICK_SIZE, -4004 QTY_LESS_THAN_MIN_QTY,
        -4005 QTY_GREATER_THAN_MAX_QTY, -4023 QTY_NOT_INCREASED_BY_STEP_SIZE, -4164 MIN_NOTIONAL (not for
        reduce-only orders: "unless you choose reduce only")."""
        f = {x["filterType"]: x for x in info["filters"]}
        places = lambda d: max(0, -int(d.normalize().as_tuple().exponent))  # noqa: E731
        if qty <= 0:
            raise _Reply(400, -4003, "Quantity less than or equal to zero.")
        if places(qty) > info.get("quantityPrecision", 8) or (price is not None and places(price) > info.get("pricePrecision", 8)):
            raise _Reply(400, -1111, "Precision is over the maximum defined for this asset.")
        if price is not None and "PRICE_FILTER" in f:
            lo, tick = Decimal(f["PRICE_FILTER"]["minPrice"]), Decimal(f["PRICE_FILTER"]["tickSize"])
            if lo and price < lo:
                raise _Reply(400, -4013, "Price less than min price.")
            if tick and price % tick:
                raise _Reply(400, -4014, "Price not increased by tick size.")
        lot = f.get("MARKET_LOT_SIZE") if otype == "MARKET" and "MARKET_LOT_SIZE" in f else f.get("LOT_SIZE")
        if lot:
            lo, hi, step = Decimal(lot["minQty"]), Decimal(lot["maxQty"]), Decimal(lot["stepSize"])
            if lo and qty < lo:
                raise _Reply(400, -4004, "Quantity less than min quantity.")
            if hi and qty > hi:
                raise _Reply(400, -4005, "Quantity greater than max quantity.")
            if step and qty % step:
                raise _Reply(400, -4023, "Quantity not increased by step size.")
        if not reduce and "MIN_NOTIONAL" in f:
            n = Decimal(f["MIN_NOTIONAL"]["notional"])
            if qty * (price if price is not None else mkt) < n:
                raise _Reply(400, -4164, f"Order's notional must be no smaller than {_s(n)} (unless you choose reduce only).")

    @staticmethod
    def _check_cid(cid: str, name: str) -> None:
        if not 1 <= len(cid) <= 36 or not set(cid) <= FUTURES_CLIENT_ID_CHARS:
            raise _Reply(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                     "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")

    # ------------------------------------------------------------------ order endpoints
    def _f_new_order(self, q: dict[str, str]) -> dict[str, Any]:
        info = self._symbol(q)
        sym = info["symbol"]
        side, otype = q.get("side", ""), q.get("type", "")
        if side not in ("BUY", "SELL"):
            raise _Reply(400, -1117, "Invalid side.")
        if otype not in ("MARKET", "LIMIT"):
            raise _Reply(400, -1116, "Invalid orderType.")
        if q.get("positionSide", "BOTH") != "BOTH":
            raise _Reply(400, -4061, "Order's position side does not match user's setting.")
        cid = q.get("newClientOrderId") or f"fake{next(self._ids)}{int(time.time() * 1000)}"
        self._check_cid(cid, "newClientOrderId")
        qty, price = self._decimal(q, "quantity"), self._decimal(q, "price")
        if qty is None:
            raise _Reply(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        if otype == "LIMIT":
            if price is None:
                raise _Reply(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
            if not q.get("timeInForce"):
                raise _Reply(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        elif price is not None:
            raise _Reply(400, -1106, "Parameter 'price' sent when not required.")
        reduce = q.get("reduceOnly", "false").lower() == "true"
        mkt = self.prices[sym]
        self._f_check_filters(info, otype, qty, price, mkt, reduce)
        if any(o["clientOrderId"] == cid and o["status"] in OPEN for o in self.orders):
            raise _Reply(400, -4116, "ClientOrderId is duplicated.")
        if reduce:
            self._check_reduce(sym, side, qty)
        else:
            amt = self.positions[sym][0]
            adds = qty if amt == 0 or _sign(amt) == (1 if side == "BUY" else -1) else max(qty - abs(amt), Decimal(0))
            if adds * (price or mkt) / self.leverage[sym] > self._avail():
                raise _Reply(400, -2019, "Margin is insufficient.")
        o = self._make_order(sym, side, otype, qty, price, cid, reduce, q.get("timeInForce", "GTC"))
        crosses = otype == "MARKET" or (side == "BUY" and price >= mkt) or (side == "SELL" and price <= mkt)  # type: ignore[operator]
        if crosses:
            self._f_fill(o, mkt, self.taker_fee, maker=False)
        out = self._f_answer_view(o)
        if q.get("newOrderRespType", "ACK") == "ACK":  # Binance's default: the order as accepted
            out.update(status="NEW", executedQty="0", cumQty="0", cumQuote="0", avgPrice="0")
        return out

    def _f_find(self, q: dict[str, str], not_found: _Reply) -> dict[str, Any]:
        self._symbol(q)
        oid, cid = q.get("orderId"), q.get("origClientOrderId")
        if not oid and not cid:
            raise _Reply(400, -1102, "Either orderId or origClientOrderId must be sent.")
        mine = [o for o in self._f_readable() if o["symbol"] == q["symbol"]]
        hit = [o for o in mine if str(o["orderId"]) == oid] if oid else [o for o in mine if o["clientOrderId"] == cid]
        if not hit:
            raise not_found
        return hit[-1]

    def _f_query_order(self, q: dict[str, str]) -> dict[str, Any]:
        return self._f_view(self._f_find(q, _Reply(400, -2013, "Order does not exist.")))

    def _f_readable(self) -> list[dict[str, Any]]:
        """The orders a query or allOrders sees: :meth:`_readable_orders` (``query_lag_ms``) minus, with
        ``order_retention``, those Binance no longer finds: "order status is CANCELED or EXPIRED AND order has NO
        filled trade AND created time + 3 days < current time" and "order create time + 90 days < current time"
        (https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Query-Order and
        .../All-Orders)."""
        rows = self._readable_orders()
        if not self.order_retention:
            return rows
        now, kept = self.server_ms(), []
        for o in rows:
            gone = (o["status"] in ("CANCELED", "EXPIRED") and not o["executedQty"] and o["time"] + 3 * DAY_MS < now) \
                or o["time"] + 90 * DAY_MS < now
            if gone:
                self.fired["forgotten"] += 1
            else:
                kept.append(o)
        return kept

    def _f_user_trades(self, q: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/userTrades``; with ``trade_window`` as documented
        (https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Account-Trade-List):
        "If startTime and endTime are both not sent, then the last 7 days' data will be returned. The time between
        startTime and endTime cannot be longer than 7 days." The docs give no error code for a longer range: the
        fake answers -1127 with spot's wording (errors.md "-1127 MORE_THAN_XX_HOURS"; an assumption for futures)."""
        if self.trade_window and not q.get("fromId"):
            if "startTime" in q and "endTime" in q and int(q["endTime"]) - int(q["startTime"]) > 7 * DAY_MS:
                raise _Reply(400, -1127, "More than 168 hours between startTime and endTime.")
            if "startTime" not in q and "endTime" not in q:
                cut = self.server_ms() - 7 * DAY_MS
                out = self._my_trades(q)     # the most recent ``limit``, then only those of the last 7 days
                kept = [t for t in out if t["time"] >= cut]
                self.fired["trade_window"] += len(out) - len(kept)
                return kept
        return self._my_trades(q)

    def _seen_position(self, sym: str) -> tuple[Decimal, Decimal]:
        """The position as positionRisk/account show it: with ``position_lag_ms``, as it was before the fills of
        the last ``position_lag_ms`` (the position endpoints' data trails the matching engine; Binance's docs advise
        the user data stream's ACCOUNT_UPDATE for timely positions)."""
        if self.position_lag_ms:
            cut = self.server_ms() - self.position_lag_ms
            for t, s, amt, entry in self._pos_log:
                if s == sym and t > cut:
                    self.fired["position_lag"] += 1
                    return amt, entry
        amt, entry = self.positions[sym]
        return amt, entry

    def _f_cancel_order(self, q: dict[str, str]) -> dict[str, Any]:
        unknown = _Reply(400, -2011, "Unknown order sent.")
        o = self._f_find(q, unknown)
        if o["status"] not in OPEN:
            raise unknown
        o["status"], o["updateTime"] = "CANCELED", self.server_ms()
        return self._f_answer_view(o, cancel=True)

    def _f_open_orders(self, q: dict[str, str]) -> list[dict[str, Any]]:
        return [self._f_view(o) for o in self.orders
                if o["status"] in OPEN and (not q.get("symbol") or o["symbol"] == q["symbol"])]

    def _f_all_orders(self, q: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(q)["symbol"]
        return [self._f_view(o) for o in self._window([o for o in self._f_readable() if o["symbol"] == sym], q, "orderId",
                                                      "orderId", "time")]

    # ------------------------------------------------------------------ algo orders
    def _f_new_algo(self, q: dict[str, str]) -> dict[str, Any]:
        info = self._symbol(q)
        sym = info["symbol"]
        if q.get("algoType") != "CONDITIONAL":
            raise _Reply(400, -1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        side, otype = q.get("side", ""), q.get("type", "")
        if side not in ("BUY", "SELL"):
            raise _Reply(400, -1117, "Invalid side.")
        if otype not in ALGO_TYPES:
            raise _Reply(400, -1116, "Invalid orderType.")
        if q.get("closePosition", "").lower() != "true":
            raise _Reply(400, -1102, "this fake serves closePosition=true algo orders only")
        cid = q.get("clientAlgoId", "")
        self._check_cid(cid, "clientAlgoId")
        trig = self._decimal(q, "triggerPrice")
        if trig is None or trig <= 0:
            raise _Reply(400, -1102, "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.")
        tick = Decimal(next(f for f in info["filters"] if f["filterType"] == "PRICE_FILTER")["tickSize"])
        if trig % tick:
            raise _Reply(400, -4014, "Price not increased by tick size.")
        if any(a["clientAlgoId"] == cid and a["algoStatus"] in ALGO_OPEN for a in self.algos):
            raise _Reply(400, -4116, "ClientOrderId is duplicated.")
        mkt = self.prices[sym]
        below = (otype == "STOP_MARKET") == (side == "SELL")
        if (below and mkt <= trig) or (not below and mkt >= trig):
            raise _Reply(400, -2021, "Order would immediately trigger.")
        if any(a["symbol"] == sym and a["side"] == side and a["orderType"] == otype and a["algoStatus"] == "NEW"
               for a in self.algos):   # every algo order here is closePosition
            raise _Reply(400, -4130, "An open stop or take profit order with GTE and closePosition in the direction "
                                     "is existing.")
        now = self.server_ms()
        a = {"algoId": next(self._ids), "clientAlgoId": cid, "orderType": otype, "symbol": sym, "side": side,
             "algoStatus": "NEW", "triggerPrice": trig, "createTime": now, "updateTime": now, "triggerTime": 0,
             "actualOrderId": "", "actualPrice": Decimal(0), "executedQty": Decimal(0)}
        self.algos.append(a)
        return self._a_answer_view(a)

    def _a_find(self, q: dict[str, str], not_found: _Reply) -> dict[str, Any]:
        aid, cid = q.get("algoId"), q.get("clientAlgoId")
        if not aid and not cid:
            raise _Reply(400, -1102, "Either algoId or clientAlgoId must be sent.")
        hit = [a for a in self.algos if (str(a["algoId"]) == aid if aid else a["clientAlgoId"] == cid)]
        if not hit:
            raise not_found
        return hit[-1]

    def _f_query_algo(self, q: dict[str, str]) -> dict[str, Any]:
        return self._a_view(self._a_find(q, _Reply(400, -2013, "Order does not exist.")))

    def _f_cancel_algo(self, q: dict[str, str]) -> dict[str, Any]:
        unknown = _Reply(400, -2011, "Unknown order sent.")
        a = self._a_find(q, unknown)
        if a["algoStatus"] != "NEW":
            raise unknown
        a["algoStatus"], a["updateTime"] = "CANCELED", self.server_ms()
        return {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "code": "200", "msg": "success"}

    def _f_open_algos(self, q: dict[str, str]) -> list[dict[str, Any]]:
        return [self._a_view(a) for a in self.algos
                if a["algoStatus"] == "NEW" and (not q.get("symbol") or a["symbol"] == q["symbol"])]

    # ------------------------------------------------------------------ account endpoints
    def _f_position_risk(self, q: dict[str, str], every: bool = False) -> list[dict[str, Any]]:
        """V3: only symbols with a position or open orders (``every``: all, for the account view),
        without V2's ``marginType``/``leverage``."""
        syms = [self._symbol(q)["symbol"]] if q.get("symbol") else list(self.positions)
        out = []
        for sym in syms:
            amt, entry = self._seen_position(sym)
            if not every and amt == 0 and not any(o["status"] in OPEN and o["symbol"] == sym for o in self.orders):
                continue
            iso = self.margin_type[sym] == "isolated"
            margin = abs(amt) * entry / self.leverage[sym]
            wallet = margin + self._iso_funding[sym] if iso and amt else Decimal(0)
            mark = self.mark(sym)
            upnl = amt * (mark - entry)
            maint = self._maint(sym)
            lp = self._liq_price_seen(sym, amt, entry)
            out.append({"symbol": sym, "positionSide": "BOTH", "positionAmt": _s(amt), "entryPrice": _s(entry),
                        "breakEvenPrice": _s(entry), "markPrice": _s(mark), "unRealizedProfit": _s(upnl),
                        "liquidationPrice": _s(lp), "isolatedMargin": _s(wallet + upnl) if iso else "0",
                        "notional": _s(amt * mark), "marginAsset": "USDT", "isolatedWallet": _s(wallet) if iso else "0",
                        "initialMargin": _s(margin), "maintMargin": _s(maint), "positionInitialMargin": _s(margin),
                        "openOrderInitialMargin": "0", "adl": 0, "bidNotional": "0", "askNotional": "0",
                        "updateTime": self.server_ms()})
        return out

    def _liq_price_seen(self, sym: str, amt: Decimal, entry: Decimal) -> Decimal:
        """The liquidation price of the position as shown (``position_lag_ms``: the lagged position's)."""
        if (amt, entry) == tuple(self.positions[sym]):
            return self.liquidation_price(sym)
        return Decimal(0)

    def _f_premium_index(self, q: dict[str, str]) -> Any:
        """``GET /fapi/v1/premiumIndex`` (Mark Price and Funding Rate): one object with ``symbol``, else a
        list of every symbol."""
        syms = [self._symbol(q)["symbol"]] if q.get("symbol") else list(self.positions)
        rows = []
        for sym in syms:
            mark = self.mark(sym)
            index = self.index_prices[sym]
            rows.append({"symbol": sym, "markPrice": f"{mark:.8f}", "indexPrice": f"{mark if index is None else index:.8f}",
                         "estimatedSettlePrice": f"{mark:.8f}", "lastFundingRate": f"{self.funding_rates[sym]:.8f}",
                         "interestRate": "0.00010000", "nextFundingTime": self._next_funding, "time": self.server_ms()})
        return rows[0] if q.get("symbol") else rows

    def _f_income(self, q: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /fapi/v1/income`` (Get Income History): by ``symbol``/``incomeType``; ``startTime``/``endTime``
        inclusive; "If neither startTime nor endTime is sent, the recent 7-day data will be returned"; limit
        default 100, max 1000 (from ``startTime`` when sent, else the most recent)."""
        rows = [r for r in self.income if (not q.get("symbol") or r["symbol"] == q["symbol"])
                and (not q.get("incomeType") or r["incomeType"] == q["incomeType"])]
        if "startTime" not in q and "endTime" not in q:
            rows = [r for r in rows if r["time"] >= self.server_ms() - 7 * DAY_MS]
        return self._window(rows, {"limit": "100", **q}, "time", "-", "time")

    def _exchange_info(self, q: dict[str, str]) -> dict[str, Any]:
        """Spot's answer plus the futures ``assets`` (margin assets) list."""
        return {**super()._exchange_info(q),
                "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}]}

    def _usdt(self) -> dict[str, Any]:
        upnl = sum((self._upnl(s) for s in self.positions), Decimal(0))
        return {"asset": "USDT", "walletBalance": _s(self.wallet), "unrealizedProfit": _s(upnl),
                "marginBalance": _s(self.wallet + upnl), "availableBalance": _s(self._avail()),
                "maxWithdrawAmount": _s(self._avail()), "updateTime": self.server_ms()}

    def _f_account(self, q: dict[str, str]) -> dict[str, Any]:
        u = self._usdt()
        rows = self._f_position_risk({}, every=True)
        im = sum((Decimal(p["positionInitialMargin"]) for p in rows), Decimal(0))
        oim = sum((o["origQty"] * o["price"] / self.leverage[o["symbol"]] for o in self.orders
                   if o["status"] in OPEN and not o["reduceOnly"]), Decimal(0))
        mm = sum((Decimal(p["maintMargin"]) for p in rows), Decimal(0))
        margins = {"initialMargin": _s(im + oim), "maintMargin": _s(mm), "positionInitialMargin": _s(im),
                   "openOrderInitialMargin": _s(oim)}
        return {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
                "totalInitialMargin": margins["initialMargin"], "totalMaintMargin": _s(mm),
                "totalWalletBalance": u["walletBalance"], "totalUnrealizedProfit": u["unrealizedProfit"],
                "totalMarginBalance": u["marginBalance"], "totalPositionInitialMargin": _s(im),
                "totalOpenOrderInitialMargin": _s(oim), "totalCrossWalletBalance": u["walletBalance"],
                "totalCrossUnPnl": u["unrealizedProfit"], "availableBalance": u["availableBalance"],
                "maxWithdrawAmount": u["maxWithdrawAmount"],
                "assets": [{**u, **margins, "crossWalletBalance": u["walletBalance"], "crossUnPnl": u["unrealizedProfit"],
                            "marginAvailable": True}],
                "positions": [{"symbol": p["symbol"], "initialMargin": p["initialMargin"], "maintMargin": p["maintMargin"],
                               "unrealizedProfit": p["unRealizedProfit"],
                               "positionInitialMargin": p["positionInitialMargin"], "openOrderInitialMargin": "0",
                               "leverage": str(self.leverage[p["symbol"]]),
                               "isolated": self.margin_type[p["symbol"]] == "isolated", "entryPrice": p["entryPrice"],
                               "maxNotional": "1000000", "bidNotional": "0", "askNotional": "0",
                               "positionSide": "BOTH", "positionAmt": p["positionAmt"], "updateTime": p["updateTime"]}
                              for p in rows]}

    def _f_balance(self, q: dict[str, str]) -> list[dict[str, Any]]:
        u = self._usdt()
        return [{"accountAlias": "fake", "asset": "USDT", "balance": u["walletBalance"], "crossWalletBalance": u["walletBalance"],
                 "crossUnPnl": u["unrealizedProfit"], "availableBalance": u["availableBalance"],
                 "maxWithdrawAmount": u["maxWithdrawAmount"], "marginAvailable": True, "updateTime": self.server_ms()}]

    def _f_leverage(self, q: dict[str, str]) -> dict[str, Any]:
        sym = self._symbol(q)["symbol"]
        try:
            lev = int(q.get("leverage", ""))
        except ValueError:
            raise _Reply(400, -1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.") from None
        if not 1 <= lev <= 125:
            raise _Reply(400, -4028, f"Leverage {lev} is not valid")
        self.leverage[sym] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    def _f_leverage_bracket(self, q: dict[str, str]) -> Any:
        """Notional and Leverage Brackets (see the class docstring)."""
        rows = [{"symbol": sym, "brackets": [dict(b) for b in br]} for sym, br in self.brackets.items()
                if "symbol" not in q or sym == q["symbol"]]
        if "symbol" in q and not rows:
            raise _Reply(400, -1121, "Invalid symbol.")
        return rows[0] if "symbol" in q and not self.brackets_as_list else rows

    def _f_margin_type(self, q: dict[str, str]) -> dict[str, Any]:
        sym = self._symbol(q)["symbol"]
        want = q.get("marginType", "").lower()
        if want not in ("isolated", "crossed"):
            raise _Reply(400, -1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        want = "cross" if want == "crossed" else want
        if self.margin_type[sym] == want:
            raise _Reply(400, -4046, "No need to change margin type.")
        if self.positions[sym][0] != 0 or any(o["status"] in OPEN and o["symbol"] == sym for o in self.orders):
            raise _Reply(400, -4048, "Margin type cannot be changed if there exists position.")
        self.margin_type[sym] = want
        return {"code": 200, "msg": "success"}

    def _f_position_mode(self, q: dict[str, str]) -> dict[str, Any]:
        return {"dualSidePosition": self.dual_side}
