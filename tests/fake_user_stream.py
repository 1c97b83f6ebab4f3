"""Binance's user data stream on 127.0.0.1 for tests, served for a running :class:`FakeExchange`
(spot) or :class:`FakeFuturesExchange` (USDT-M futures) by watching its state:
``with fx, FakeUserStream(fx, "futures") as us:``, then ``UserStream(client, "futures", us.url)``.

Events are made by diffing the fake exchange's orders, trades, algo orders, positions and balances
every ``poll_s`` (20 ms), so an event follows a state change within about that; nothing in the fake
exchanges is changed except the futures listen-key routes it registers on that instance. As on
Binance, events are not replayed: one made while no subscription is live is lost.

Spot (binance-spot-api-docs web-socket-api.md): the WebSocket API at ``/ws-api/v3``;
``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``, HMAC-SHA-256 hex ``signature``
of the sorted params, checked against the exchange's key and secret) answers ``{"subscriptionId"}``
and starts ``{"subscriptionId", "event"}`` messages: ``executionReport`` (a cancel carries the order's
id in ``C``), ``outboundAccountPosition``; ``userDataStream.unsubscribe`` ends it with
``eventStreamTerminated``; :meth:`server_shutdown` sends ``serverShutdown`` and disconnects.

Futures (developers.binance.com usds-margined-futures "User Data Streams"): ``POST /fapi/v1/listenKey``
(the active key, extended, or a new one), ``PUT`` (extends; -1125 "This listenKey does not exist." for
an unknown or expired key), ``DELETE``; a key lives ``listen_key_ttl_s`` (Binance: 60 min) after its
last POST/PUT, then ``listenKeyExpired`` is pushed on its connections, which stay open but get no
more events. Connections: ``/private/ws/<listenKey>`` or ``/private/ws?listenKey=<key>`` (a handshake
with an unknown or expired key is refused HTTP 400: Binance does not document this case). Events:
``ORDER_TRADE_UPDATE`` (an ``autoclose-`` order's fill has execution type ``CALCULATED``),
``ACCOUNT_UPDATE`` (reason ``ORDER``; reason ``FUNDING_FEE`` for a funding settlement of the fake
exchange, as "Event: Balance and Position Update" documents it: the balance ``B`` of the fee's asset
only, and ``P`` only for an isolated position, the one charged), ``ALGO_UPDATE``. The observer also
settles the fake exchange's due funding (and so its liquidations) at each poll. :func:`liquidate`
liquidates a position at a given price by hand; the fake futures exchange also liquidates on its own
when the mark price reaches the liquidation price.

Both: every connection is cut after ``max_connection_s`` (Binance: 24 h); :meth:`drop` cuts them all
(TCP shutdown, no close frame); ``refuse = True`` answers handshakes HTTP 503.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import queue
import secrets
import socket
import threading
import time
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse

from fake_exchange import FakeExchange, _Reply
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

LISTEN_KEY_ROUTES = {("POST", "/fapi/v1/listenKey"): ("_uds_post_key", False),
                     ("PUT", "/fapi/v1/listenKey"): ("_uds_put_key", False),
                     ("DELETE", "/fapi/v1/listenKey"): ("_uds_delete_key", False)}


def _s(d: Any) -> str:
    d = Decimal(str(d))
    return format(d.normalize(), "f") if d else "0"


def liquidate(fx: Any, symbol: str, price: Any) -> dict[str, Any]:
    """Liquidate ``fx``'s (a FakeFuturesExchange) whole position in ``symbol`` at ``price``, as Binance
    does: a MARKET order with client id ``autoclose-<ms>`` and type ``LIQUIDATION`` (taker fee).
    Returns the order (internal form)."""
    with fx._xlock:
        p = fx.prices[symbol] = Decimal(str(price))
        if not fx.positions[symbol][0]:
            raise ValueError(f"no {symbol} position to liquidate")
        return fx.liquidate_at(symbol, p)


class FakeUserStream:
    def __init__(self, fx: FakeExchange, market: str, *, listen_key_ttl_s: float = 3600.0,
                 max_connection_s: float = 24 * 3600.0, poll_s: float = 0.02) -> None:
        if market not in ("spot", "futures"):
            raise ValueError(f"market must be 'spot' or 'futures', not {market!r}")
        self.fx, self.market = fx, market
        self.listen_key_ttl_s, self.max_connection_s, self.poll_s = listen_key_ttl_s, max_connection_s, poll_s
        self.refuse = False
        self.paths: list[str] = []                  # each accepted connection's request path
        self.key_calls: list[tuple[str, float]] = []  # (POST/PUT/DELETE, time.monotonic()) of listen-key requests
        self.issued: list[str] = []                 # every listen key handed out, oldest first
        self.expired_sent = 0                       # listenKeyExpired events pushed
        self.subscriptions = 0                      # spot subscriptions accepted
        self.events: list[tuple[float, dict[str, Any]]] = []   # (time.monotonic(), event) of every event made
        self.key: str | None = None
        self._key_expires = 0.0
        self._announced: str | None = None          # the expired key whose listenKeyExpired was sent
        self._lock = threading.Lock()
        self._pass, self._passes = 0, threading.Condition()   # observer passes made (caught_up)
        self._conns: dict[ServerConnection, dict[str, Any]] = {}
        self._stopping = threading.Event()
        self._cancel_ids = itertools.count(1)
        self._seen: dict[str, Any] = {}
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request,
                             compression=None, close_timeout=0.5)
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True),
                         threading.Thread(target=self._observe, daemon=True)]

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    @property
    def stream_url(self) -> str:
        """What the bot's setting names: spot the WebSocket API (``/ws-api/v3``), futures the private host
        (``/private``, to which the client adds the listen key)."""
        return self.url + ("/ws-api/v3" if self.market == "spot" else "/private")

    def __enter__(self) -> "FakeUserStream":
        if self.market == "futures":
            self.fx.ROUTES = {**type(self.fx).ROUTES, **LISTEN_KEY_ROUTES}  # type: ignore[misc]
            self.fx._uds_post_key, self.fx._uds_put_key, self.fx._uds_delete_key = (  # type: ignore[attr-defined]
                self._post_key, self._put_key, self._delete_key)
            handler, fx = self.fx._server.RequestHandlerClass, self.fx
            if not hasattr(handler, "do_PUT"):   # FakeExchange's handler (made per instance) serves no PUT

                def do_put(h: Any) -> None:
                    if not fx._serve(h, "PUT"):
                        h._send(404, {"code": -1000, "msg": f"unknown path {h.path}"})

                handler.do_PUT = do_put
        self._seen = self._snapshot()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._server.shutdown()
        for t in self._threads:
            t.join(timeout=5)

    # ------------------------------------------------------------------ test controls
    @property
    def live_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns.values() if c["live"])

    def wait_live(self, n: int = 1, timeout: float = 3.0) -> bool:
        """Wait until ``n`` connections have been accepted in all and one is live (subscribed / keyed)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.paths) >= n and self.live_connections:
                return True
            time.sleep(0.01)
        return False

    def drop(self) -> None:
        """Cut every open connection (TCP shutdown, no close frame)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_shutdown(self) -> None:
        """Spot: send ``serverShutdown`` to every connection, then close them."""
        self._broadcast({"e": "serverShutdown", "E": self.fx.server_ms()}, control=True)
        time.sleep(0.1)
        self.drop()

    # ------------------------------------------------------------------ futures listen keys (REST)
    def _valid(self, key: str | None) -> bool:
        return key is not None and key == self.key and time.monotonic() < self._key_expires

    def _post_key(self, q: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.key_calls.append(("POST", time.monotonic()))
            if not self._valid(self.key):
                self.key = secrets.token_hex(32)
                self.issued.append(self.key)
            self._key_expires = time.monotonic() + self.listen_key_ttl_s
            return {"listenKey": self.key}

    def _put_key(self, q: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.key_calls.append(("PUT", time.monotonic()))
            if not self._valid(q.get("listenKey", self.key)):
                raise _Reply(400, -1125, "This listenKey does not exist.")
            self._key_expires = time.monotonic() + self.listen_key_ttl_s
            return {"listenKey": self.key}

    def _delete_key(self, q: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.key_calls.append(("DELETE", time.monotonic()))
            self.key = None
            return {}

    # ------------------------------------------------------------------ the server
    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if self.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refused by the test\n")
        u = urlparse(request.path)
        if self.market == "spot":
            if u.path != "/ws-api/v3":
                return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
            return None
        key = u.path.removeprefix("/private/ws/") if u.path.startswith("/private/ws/") else (
            parse_qs(u.query).get("listenKey", [None])[0] if u.path == "/private/ws" else None)
        with self._lock:
            ok = self._valid(key)
        if not ok:
            return connection.respond(HTTPStatus.BAD_REQUEST, "invalid listen key\n")
        connection.listen_key = key  # type: ignore[attr-defined]
        return None

    def _handle(self, connection: ServerConnection) -> None:
        key = getattr(connection, "listen_key", None)
        state: dict[str, Any] = {"q": queue.Queue(), "key": key, "live": key is not None, "muted": False, "sub": None}
        opened = time.monotonic()
        with self._lock:
            self._conns[connection] = state
            self.paths.append(connection.request.path)
        try:
            while not self._stopping.is_set():
                if time.monotonic() - opened > self.max_connection_s:
                    connection.close()   # Binance: a connection is valid for 24 h only
                    break
                try:
                    request = connection.recv(timeout=0.01)
                except TimeoutError:
                    request = None
                if request is not None and self.market == "spot":
                    self._answer_spot(connection, state, request)
                while True:
                    try:
                        connection.send(state["q"].get_nowait())
                    except queue.Empty:
                        break
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                self._conns.pop(connection, None)

    def _answer_spot(self, connection: ServerConnection, state: dict[str, Any], raw: Any) -> None:
        try:
            req = json.loads(raw)
            rid, method, params = req.get("id"), req.get("method"), dict(req.get("params") or {})
        except (ValueError, AttributeError):
            connection.send(json.dumps({"id": None, "status": 400, "error": {"code": -1102, "msg": "malformed request"}}))
            return

        def error(status: int, code: int, msg: str) -> None:
            connection.send(json.dumps({"id": rid, "status": status, "error": {"code": code, "msg": msg}}))

        if method == "userDataStream.subscribe.signature":
            sig = params.pop("signature", "")
            payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
            good = hmac.new(self.fx.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if params.get("apiKey") != self.fx.api_key:
                return error(401, -2015, "Invalid API-key, IP, or permissions for action.")
            if not hmac.compare_digest(str(sig).lower(), good):
                return error(400, -1022, "Signature for this request is not valid.")
            try:
                ts = int(params.get("timestamp"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return error(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
            if abs(self.fx.server_ms() - ts) > float(params.get("recvWindow", 5000)):
                return error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            with self._lock:
                state["sub"] = self.subscriptions
                self.subscriptions += 1
                state["live"] = True
            connection.send(json.dumps({"id": rid, "status": 200, "result": {"subscriptionId": state["sub"]}}))
        elif method == "userDataStream.unsubscribe":
            with self._lock:
                sub, state["live"] = state["sub"], False
            connection.send(json.dumps({"id": rid, "status": 200, "result": {}}))
            if sub is not None:
                connection.send(json.dumps({"subscriptionId": sub, "event": {"e": "eventStreamTerminated",
                                                                              "E": self.fx.server_ms()}}))
        else:
            error(400, -1102, f"unknown method {method!r} (this fake serves the user data stream only)")

    def _broadcast(self, event: dict[str, Any], control: bool = False) -> None:
        with self._lock:
            if not control:
                self.events.append((time.monotonic(), event))
            for st in self._conns.values():
                if self.market == "spot":
                    if control:
                        st["q"].put(json.dumps({"event": event}))
                    elif st["live"] and st["sub"] is not None:
                        st["q"].put(json.dumps({"subscriptionId": st["sub"], "event": event}))
                elif st["live"] and not st["muted"]:
                    st["q"].put(json.dumps(event))

    # ------------------------------------------------------------------ events from the exchange's state
    def _observe(self) -> None:
        while not self._stopping.wait(self.poll_s):
            if self.market == "futures":
                self._check_expiry()
            with self.fx._xlock:
                settle = getattr(self.fx, "_settle_funding", None)
                if settle is not None:     # the funding times the clock passed, as a request would
                    settle()
                now = self._snapshot()
                events = self._diff(self._seen, now)
                self._seen = now
            for e in events:
                self._broadcast(e)
            with self._passes:
                self._pass += 1
                self._passes.notify_all()

    def caught_up(self, timeout: float = 2.0) -> bool:
        """Wait until the exchange's state as it is now has been turned into events (two passes of the
        observer): an order made before a client connects then has its events made while nobody
        listened (lost, as on Binance), not pushed to that client later."""
        with self._passes:
            target = self._pass + 2
            return self._passes.wait_for(lambda: self._pass >= target, timeout)

    def _check_expiry(self) -> None:
        with self._lock:
            key = self.key
            if key is None or time.monotonic() < self._key_expires or self._announced == key:
                return
            self._announced = key
            self.expired_sent += 1
            for st in self._conns.values():
                if st["key"] == key and not st["muted"]:
                    st["q"].put(json.dumps({"e": "listenKeyExpired", "E": self.fx.server_ms(), "listenKey": key}))
                    st["muted"] = True   # "No more user data event will be updated after this event"

    def _snapshot(self) -> dict[str, Any]:
        fx = self.fx
        snap: dict[str, Any] = {
            "orders": {o["orderId"]: (o["status"], o["executedQty"]) for o in fx.orders},
            "ntrades": len(fx.trades)}
        if self.market == "futures":
            snap["algos"] = {a["algoId"]: a["algoStatus"] for a in fx.algos}  # type: ignore[attr-defined]
            snap["positions"] = {s: tuple(v) for s, v in fx.positions.items()}  # type: ignore[attr-defined]
            snap["wallet"] = fx.wallet  # type: ignore[attr-defined]
            snap["nincome"] = len(fx.income)  # type: ignore[attr-defined]
        else:
            snap["balances"] = {a: tuple(v) for a, v in fx.balances.items()}
        return snap

    def _diff(self, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
        fx, at = self.fx, self.fx.server_ms()
        by_id = {o["orderId"]: o for o in fx.orders}
        out: list[dict[str, Any]] = []
        if self.market == "futures":
            for a in fx.algos:  # type: ignore[attr-defined]
                if old["algos"].get(a["algoId"]) != a["algoStatus"]:   # new (NEW) or changed
                    out.append(self._algo_event(a, at))
        traded = {t["orderId"]: t for t in fx.trades[old["ntrades"]:]}
        for oid, (status, executed) in new["orders"].items():
            o = by_id[oid]
            if oid not in old["orders"]:
                out.append(self._order_event(o, "NEW", None, at, status_override="NEW"))
            if oid in traded:
                out.append(self._order_event(o, "CALCULATED" if o["clientOrderId"].startswith("autoclose-") else "TRADE",
                                             traded[oid], at))
            elif old["orders"].get(oid, ("NEW",))[0] != status and status in ("CANCELED", "EXPIRED", "REJECTED"):
                out.append(self._order_event(o, status, None, at))
        if self.market == "futures":
            changed = [s for s, v in new["positions"].items() if old["positions"].get(s) != v]
            funding = [r for r in fx.income[old.get("nincome", new["nincome"]):new["nincome"]]  # type: ignore[attr-defined]
                       if r["incomeType"] == "FUNDING_FEE"]
            paid = sum((Decimal(r["income"]) for r in funding), Decimal(0))
            wallet = new["wallet"] - paid        # the wallet before the fees (each event shows it after its own)
            for r in funding:
                wallet += Decimal(r["income"])
                out.append(self._funding_event(r, wallet, at))
            if changed or new["wallet"] != old["wallet"] + paid:
                out.append(self._account_event(changed, at))
        else:
            changed = [a for a, v in new["balances"].items() if old["balances"].get(a) != v]
            if changed:
                out.append({"e": "outboundAccountPosition", "E": at, "u": at,
                            "B": [{"a": a, "f": _s(new["balances"][a][0]), "l": _s(new["balances"][a][1])} for a in changed]})
        return out

    def _order_event(self, o: dict[str, Any], x: str, trade: dict[str, Any] | None, at: int,
                     status_override: str | None = None) -> dict[str, Any]:
        status = status_override or o["status"]
        executed = Decimal(0) if status_override else o["executedQty"]
        t = trade or {}
        if self.market == "spot":
            cid, orig = o["clientOrderId"], ""
            if x == "CANCELED":   # a cancel carries the cancel request's id in "c", the order's in "C"
                cid, orig = f"cancel{next(self._cancel_ids)}", o["clientOrderId"]
            return {"e": "executionReport", "E": at, "s": o["symbol"], "c": cid, "S": o["side"], "o": o["type"],
                    "f": o.get("timeInForce", "GTC"), "q": _s(o["origQty"]), "p": _s(o["price"]), "P": "0", "F": "0",
                    "g": -1, "C": orig, "x": x, "X": status, "r": "NONE", "i": o["orderId"],
                    "l": t.get("qty", "0"), "z": _s(executed),
                    "L": t.get("price", "0"), "n": t.get("commission", "0"), "N": t.get("commissionAsset"),
                    "T": t.get("time", at), "t": t.get("id", -1), "w": status == "NEW", "m": bool(t.get("isMaker")),
                    "M": False, "O": o["time"], "Z": _s(Decimal(0) if status_override else o["cummulativeQuoteQty"]),
                    "Y": t.get("quoteQty", "0"), "Q": "0"}
        return {"e": "ORDER_TRADE_UPDATE", "E": at, "T": t.get("time", at), "o": {
            "s": o["symbol"], "c": o["clientOrderId"], "S": o["side"], "o": o["type"], "f": o.get("timeInForce", "GTC"),
            "q": _s(o["origQty"]), "p": _s(o["price"]), "ap": _s(Decimal(0) if status_override else o["avgPrice"]),
            "sp": _s(o.get("stopPrice", 0)), "x": x, "X": status, "i": o["orderId"], "l": t.get("qty", "0"),
            "z": _s(executed), "L": t.get("price", "0"), "N": t.get("commissionAsset", "USDT"),
            "n": t.get("commission", "0"), "T": t.get("time", at), "t": t.get("id", 0), "b": "0", "a": "0",
            "m": bool(t.get("maker")), "R": o.get("reduceOnly", False), "wt": "CONTRACT_PRICE", "ot": o.get("origType", o["type"]),
            "ps": "BOTH", "cp": o.get("closePosition", False), "rp": t.get("realizedPnl", "0"), "pP": False, "si": 0,
            "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0, "er": "0"}}

    def _algo_event(self, a: dict[str, Any], at: int) -> dict[str, Any]:
        return {"e": "ALGO_UPDATE", "T": a["updateTime"], "E": at, "o": {
            "caid": a["clientAlgoId"], "aid": a["algoId"], "at": "CONDITIONAL", "o": a["orderType"], "s": a["symbol"],
            "S": a["side"], "ps": "BOTH", "f": "GTC", "q": "0", "X": a["algoStatus"], "ai": str(a["actualOrderId"] or ""),
            "ap": _s(a["actualPrice"]), "aq": _s(a["executedQty"]), "act": "MARKET" if a["actualOrderId"] else "0",
            "tp": _s(a["triggerPrice"]), "p": "0", "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE",
            "cp": True, "pP": False, "R": True, "tt": a["triggerTime"], "gtd": 0}}

    def _funding_event(self, row: dict[str, Any], wallet: Decimal, at: int) -> dict[str, Any]:
        """``ACCOUNT_UPDATE`` with reason ``FUNDING_FEE`` for one income row: ``B`` the fee's asset only (``bc``:
        the fee, a balance change that is neither P&L nor commission); ``P`` the position only when isolated."""
        fx, sym = self.fx, row["symbol"]
        w = _s(wallet)
        pos = []
        if fx.margin_type[sym] == "isolated":  # type: ignore[attr-defined]
            amt, entry = fx.positions[sym]  # type: ignore[attr-defined]
            pos = [{"s": sym, "pa": _s(amt), "ep": _s(entry), "bep": _s(entry), "cr": "0", "up": _s(fx._upnl(sym)),  # type: ignore[attr-defined]
                    "mt": "isolated", "iw": _s(fx._iso_wallet(sym)), "ps": "BOTH"}]  # type: ignore[attr-defined]
        return {"e": "ACCOUNT_UPDATE", "E": at, "T": row["time"], "a": {
            "m": "FUNDING_FEE", "B": [{"a": row["asset"], "wb": w, "cw": w, "bc": _s(row["income"])}], "P": pos}}

    def _account_event(self, symbols: list[str], at: int) -> dict[str, Any]:
        fx = self.fx
        w = _s(fx.wallet)  # type: ignore[attr-defined]
        return {"e": "ACCOUNT_UPDATE", "E": at, "T": at, "a": {
            "m": "ORDER", "B": [{"a": "USDT", "wb": w, "cw": w, "bc": "0"}],
            "P": [{"s": s, "pa": _s(fx.positions[s][0]), "ep": _s(fx.positions[s][1]), "bep": _s(fx.positions[s][1]),  # type: ignore[attr-defined]
                   "cr": "0", "up": "0", "mt": fx.margin_type[s], "iw": "0", "ps": "BOTH"} for s in symbols]}}  # type: ignore[attr-defined]
