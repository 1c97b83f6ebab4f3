"""The bot's wiring (``mlrisk live`` after its arguments are parsed): settings -> pinned model ->
state store -> exchange -> execution -> candle feed -> :class:`~mlrisk.live.loop.Bot`, for the
exchange modes and paper (:func:`paper`) and for a replay from a file (:func:`replay`);
:func:`run` checks the combination of flags first (one-line errors before any network call).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlrisk.errors import SettingsError
from mlrisk.exit_codes import ExitCode

#: flags that belong to the live loop (state file, candle feed, stopping); a replay refuses them
REPLAY_REFUSES = ("state_file", "reset_halt", "kill_switch_file", "flatten_on_stop", "poll_delay_s", "poll_retry_s",
                  "max_stale_s", "websocket", "websocket_url", "websocket_stall_s", "user_stream", "user_stream_url",
                  "user_stream_key_form")


def flag(name: str) -> str:
    """The command-line flag of a setting: ``max_drawdown`` -> ``--max-drawdown``."""
    return "--" + name.replace("_", "-")


def _settings(args: argparse.Namespace) -> Any:
    from mlrisk.live.settings import ENV_ONLY, LiveSettings, load_live_settings

    overrides = {n: getattr(args, n) for n in LiveSettings.model_fields if n not in ENV_ONLY}
    return load_live_settings(env_file=args.env_file, **overrides)


def run(args: argparse.Namespace) -> int:
    from mlrisk.live.model import pin_model
    from mlrisk.times import INTERVAL_MS, to_ms

    settings = _settings(args)
    if settings.sends_orders and args.replay is not None:
        raise SettingsError("--replay is offline: use it with --mode paper")
    if args.replay is None and (args.start or args.trades_out):
        raise SettingsError("--start and --trades-out belong to --replay FILE")
    if args.no_risk_limits and settings.sends_orders:
        raise SettingsError(f"--no-risk-limits is for paper mode and --replay only: mode {settings.mode} sends orders "
                            "and keeps its limits (loosen MLRISK_MAX_DAILY_LOSS etc. instead)")
    if args.replay is not None:
        live_only = [flag(n) for n in REPLAY_REFUSES if getattr(args, n, None)]
        if live_only:
            raise SettingsError(f"--replay keeps no state and reads no exchange (a fresh temporary state per run): "
                                f"drop {', '.join(live_only)}")
    start_ms = None
    if args.start is not None:
        try:
            start_ms = to_ms(args.start)
        except ValueError:
            raise SettingsError(f"--start {args.start!r} is not a date/time: use e.g. 2024-09-05 or 2024-09-05T06:00") from None
    if args.replay is not None and not args.replay.exists():
        raise SettingsError(f"--replay {args.replay}: no such file")
    if getattr(args, "check_venue", False):
        return check_venue(args, settings)
    model = pin_model(args.repo, args.rev)
    try:
        symbol, interval = model.resolve(settings.symbol, settings.interval)
        settings = settings.for_strategy(model.backtest)
        if settings.sends_orders:
            from mlrisk.live.risk import check_supported

            check_supported(model.backtest, settings.market, settings.max_leverage)
        if args.replay is not None:
            return replay(args, settings, model, symbol, interval, INTERVAL_MS[interval], start_ms)
        return paper(args, settings, model, symbol, interval, INTERVAL_MS[interval])
    finally:
        model.close()


def check_venue(args: argparse.Namespace, settings: Any) -> int:
    """``--check-venue``: the venue's read-only checks (:meth:`~mlrisk.live.venue.FuturesVenue.checks`), one line
    each on stdout; ExitCode.OK when all held, USER_ERROR (2) otherwise. The symbol and market are the
    settings' (else the pinned model's)."""
    from mlrisk.exchange import ExchangeClient
    from mlrisk.live.venue import FuturesVenue, SpotVenue

    if not settings.sends_orders:
        raise SettingsError("--check-venue reads the account with the keys: use it with --mode testnet or live")
    symbol, market = settings.symbol, settings.market
    if symbol is None or market is None:
        from mlrisk.live.model import pin_model

        model = pin_model(args.repo, args.rev)
        try:
            symbol, _ = model.resolve(settings.symbol, settings.interval)
            market = settings.for_strategy(model.backtest).market
        finally:
            model.close()
    signed = ExchangeClient(settings.exchange_settings(), market=market, signed=True)
    venue = (FuturesVenue if market == "futures" else SpotVenue)(signed, symbol)
    checks = venue.checks()
    for c in checks:
        print(f"check-venue: {'held' if c.held else 'FAILED'} {c.name}: {c.detail}")
    failed = [c.name for c in checks if not c.held]
    print(f"check-venue summary, {settings.mode} {market} {symbol}: " + (f"{len(failed)} failed ({', '.join(failed)})"
                                                                  if failed else f"all {len(checks)} held"))
    return ExitCode.USER_ERROR if failed else ExitCode.OK


def _bot(args: argparse.Namespace, settings: Any, model: Any, store: Any, log: Any, interval_ms: int, *, symbol: str,
         market: str, interval: str, raw_dir: Path | None = None, futures: Any = None, **kw: Any) -> Any:
    """The :class:`~mlrisk.live.loop.Bot` of the pinned model, trading ``symbol`` on ``market``: the backtest's
    parameters with the brackets, lot step and minimum notional the backtest stage uses for that market
    (:func:`mlrisk.backtest.futures.market_params`, the one choice), deciding on the window its features
    need (:func:`window_inputs`; ``raw_dir``: a replay's tables; ``futures``: the bot's public
    :class:`~mlrisk.live.venue.FuturesVenue`, shared with its per-candle market inputs)."""
    from mlrisk.backtest.futures import market_params
    from mlrisk.backtest.runner import params_vector
    from mlrisk.live.loop import Bot
    from mlrisk.live.risk import RiskLimits
    from mlrisk.model.inference import Predictor

    predictor = Predictor(model.model_path, model.spec_path)
    spec = predictor.spec
    limits = RiskLimits.none() if args.no_risk_limits else RiskLimits.from_settings(settings)
    bp, brackets = market_params(symbol, market, model.backtest)
    window = window_inputs(spec, settings, market, symbol, interval, interval_ms, raw_dir, futures)  # None: the candles suffice
    predict = predictor.predict_latest if window is None else (lambda hist: predictor.predict_latest(window(hist)))
    return Bot(predict, spec.seq_len + spec.warmup, spec.seq_len,
               params_vector(bp, interval_ms), interval_ms, limits, store, log, brackets=brackets, **kw)


def replay_inputs(replay_file: Path, symbol: str, interval: str, interval_ms: int, candles: Any) -> Any:
    """The perpetual's funding and mark tables stored beside a replayed candle file (the fetch stage's
    ``data/raw`` layout, read by :func:`mlrisk.data.derivatives.raw_tables`),
    joined onto ``candles`` (:class:`mlrisk.live.feeds.market.TableInputs`); a table that is not there is
    None (its fallback: the constant ``funding_rate``, the last price), which the summary line says."""
    from mlrisk.data.derivatives import raw_tables
    from mlrisk.live.feeds.replay import open_ms
    from mlrisk.live.feeds.market import TableInputs

    t = raw_tables(replay_file.parent, symbol, interval)
    return TableInputs(open_ms(candles), t["funding"](), t["mark"](), interval_ms)


def window_inputs(spec: Any, settings: Any, market: str, symbol: str, interval: str, interval_ms: int,
                  raw_dir: Path | None = None, futures: Any = None) -> Any:
    """The :class:`~mlrisk.live.feeds.inputs.WindowInputs` the pinned model's features need (``spec``: its
    :class:`~mlrisk.data.preprocess.PreprocessSpec`; ``market``: the market the bot trades, the one
    :func:`_bot` prices it on: a replay's is the model's ``data.market``; funding,
    mark, spot klines, open interest read from the exchange on public clients, or, for a replay, from
    the fetch stage's tables in ``raw_dir``), or None when its features read the traded candles only.
    ``futures``: the public :class:`~mlrisk.live.venue.FuturesVenue` to read through (the paper bot's one,
    also its per-candle funding and mark reader); None builds one on the mode's futures host."""
    from mlrisk.exchange import ExchangeClient
    from mlrisk.live.feeds.inputs import ExchangeReads, WindowInputs
    from mlrisk.live.venue import FuturesVenue

    w = WindowInputs(spec.features, spec.candles, market, interval, interval_ms, spec.metrics_lag * 60_000, None)
    if not w.needed:
        return None
    if market != "futures":
        raise SettingsError(f"the model's features ({', '.join(spec.features)}; candles {spec.candles}) read the "
                            "perpetual's data: trade it on futures (MLRISK_MARKET futures)")
    if raw_dir is not None:
        from mlrisk.live.feeds.inputs import RawReads

        w.reads = RawReads(raw_dir, symbol, interval)
        return w
    spot_host = settings.model_copy(update={"market": "spot"}).exchange_settings()  # the mode's spot host
    if futures is None:
        futures = FuturesVenue(ExchangeClient(settings.exchange_settings(), market="futures"), symbol)
    w.reads = ExchangeReads(symbol, futures, ExchangeClient(spot_host, market="spot"))
    return w


def replay(args: argparse.Namespace, settings: Any, model: Any, symbol: str, interval: str, interval_ms: int,
            start_ms: int | None) -> int:
    from mlrisk.io import write_csv
    from mlrisk.live.feeds.replay import read_candle_file
    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import run_replay, trades_table
    from mlrisk.live.state import StateStore

    candles = read_candle_file(args.replay, interval_ms)
    market = model.params.data.market  # the instrument the backtest stage measured: replay it alike
    perp = replay_inputs(args.replay, symbol, interval, interval_ms, candles) if market == "futures" else None
    with tempfile.TemporaryDirectory(prefix="mlrisk-replay-") as tmp:
        store = StateStore(Path(tmp) / "replay.sqlite", symbol=symbol, interval=interval, market=settings.market,
                           mode="replay", client_id_prefix=settings.client_id_prefix)
        log = CandleLog(settings.log_file, sys.stderr if args.verbose else None)
        try:
            bot = _bot(args, settings, model, store, log, interval_ms, symbol=symbol, market=market, interval=interval,
                       raw_dir=Path(args.replay).parent, window_start_ms=start_ms, clock=lambda close_ms: close_ms,
                       perp=perp)
            res = run_replay(bot, candles, start_ms)
            log.event("replay_end", candles=res.candles, equity=res.equity, seconds=round(res.seconds, 3))
        finally:
            log.close()
            store.close()
    trades = trades_table(res.trades, res.origin_ms, interval_ms)
    if args.trades_out is not None:
        write_csv(args.trades_out, trades)
    initial = model.backtest.initial_equity
    for t in trades.itertuples():
        print(f"trade {t.entry_time:%Y-%m-%d %H:%M} -> {t.exit_time:%Y-%m-%d %H:%M} {t.side:5} {t.exit_reason:11} "
              f"entry {t.entry_price:.2f} exit {t.exit_price:.2f} pnl {t.pnl:+.2f}")
    note = res.limits_note(interval_ms)
    limits = "; risk limits off (--no-risk-limits), like the backtest" if args.no_risk_limits else (
        f"; {note}" if note else "")
    costs = "" if perp is None else (f"; {market}: funding {perp.sources['funding']}, "
                                     f"liquidation on the {perp.sources['liquidation']} price")
    print(f"replay: {symbol} {interval}, {res.candles} candles in {res.seconds:.2f} s "
          f"({res.candles / max(res.seconds, 1e-9):.0f} candles/s), {len(trades)} trades, final equity "
          f"{res.equity:.2f} ({res.equity / initial - 1:+.2%}){costs}{limits}")
    return ExitCode.OK


def start_user_stream(settings: Any, signed: Any, broker: Any, log: Any) -> Any:
    """Start the user data stream of an exchange mode (:class:`~mlrisk.live.user_stream.UserStream` on
    :attr:`~mlrisk.live.settings.LiveSettings.uds_url`, signed with ``signed``'s keys) and return its
    :class:`~mlrisk.live.user_stream.StreamPump` feeding ``broker``'s ``apply_update``, or None when the
    stream is off (logged when the settings leave it off by a custom REST host). ``close()`` it on exit."""
    from mlrisk.live.user_stream import StreamPump, UserStream

    url = settings.uds_url
    if url is None:
        if settings.user_stream and settings.sends_orders:
            log.event("warning", message="user data stream off: MLRISK_BINANCE_BASE_URL is set without "
                      "MLRISK_USER_STREAM_URL; fills and triggers are read by REST at each close")
        return None
    stream = UserStream(signed, settings.market, url, key_form=settings.user_stream_key_form)
    pump = StreamPump(stream, broker.apply_update, broker.stream_reconcile, log.event)
    broker.follow_stream(pump.drain)  # unknown outcomes are settled from the stream first
    stream.start()
    log.event("user_stream", url=url, market=settings.market)
    return pump


def paper(args: argparse.Namespace, settings: Any, model: Any, symbol: str, interval: str, interval_ms: int) -> int:
    from mlrisk.exchange import ExchangeClient
    from mlrisk.live.feeds.polling import PollingFeed
    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import Stopper, run_paper
    from mlrisk.live.state import RiskState, StateStore

    store = StateStore.from_settings(settings, symbol=symbol, interval=interval)
    log = CandleLog(settings.log_file or Path("live/bot.jsonl"), sys.stderr)
    stop = Stopper(settings.kill_switch_file)
    if stop():
        store.close()
        log.close()
        raise SettingsError(f"the kill switch file {settings.kill_switch_file} exists: remove it to start")
    from mlrisk.live.observe import watch

    try:
        watching = watch(settings, log)  # the metrics endpoint and the alerts, when the settings ask for them
    except BaseException:
        store.close()
        log.close()
        raise
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in old:
        signal.signal(s, lambda signum, _f: stop.request(signal.Signals(signum).name))
    try:
        if args.reset_halt:
            r = store.risk()
            store.save_risk(RiskState(r.day_start_ms, r.day_start_equity, r.peak_equity, False, ""))
        r = store.risk()
        if r.halted:
            log.event("halted", reason=r.halt_reason, note="entries stay blocked; --reset-halt clears a drawdown halt")
        broker = None
        if settings.sends_orders:
            from mlrisk.live.execution.futures import FuturesBroker
            from mlrisk.live.execution.spot import ExchangeBroker

            signed = ExchangeClient(settings.exchange_settings(), market=settings.market, signed=True)
            signed.server_time_ms()  # the clock offset for signed requests
            if settings.market == "futures":
                broker = FuturesBroker(signed, store, symbol, settings.client_id_prefix, model.backtest,
                                       max_leverage=settings.max_leverage,
                                       max_position_notional=settings.max_position_notional,
                                       recv_window_ms=settings.recv_window_ms, read_lag_ms=settings.read_lag_ms)
                for line in broker.setup():  # one-way mode, isolated margin, leverage (idempotent)
                    log.event("setup", action=line)
            else:
                broker = ExchangeBroker(signed, store, symbol, settings.client_id_prefix, model.backtest.order_size,
                                        model.backtest.min_notional, max_position_notional=settings.max_position_notional,
                                        recv_window_ms=settings.recv_window_ms, read_lag_ms=settings.read_lag_ms)
            for line in broker.reconcile():  # raises PositionMismatch (halted, exit 2) when unexplained
                log.event("reconcile", order=line)
        perp = futures = None
        if settings.market == "futures":  # one public venue: the window's inputs and (paper) funding and mark
            from mlrisk.live.feeds.market import VenueInputs
            from mlrisk.live.venue import FuturesVenue

            futures = FuturesVenue(ExchangeClient(settings.exchange_settings(), market="futures", signed=False), symbol)
            if not settings.sends_orders:  # paper: funding and mark from the venue
                perp = VenueInputs(futures, interval, interval_ms)
        bot = _bot(args, settings, model, store, log, interval_ms, symbol=symbol, market=settings.market, interval=interval,
                   broker=broker, perp=perp, futures=futures)
        pump = None if broker is None else start_user_stream(settings, signed, broker, log)
        exchange = ExchangeClient(settings.exchange_settings(), market=settings.market, signed=False)
        feed = PollingFeed(exchange, symbol, interval, interval_ms, poll_delay_s=settings.poll_delay_s,
                           poll_retry_s=settings.poll_retry_s, max_stale_s=settings.max_stale_s, stop=stop,
                           warn=lambda m: log.event("warning", message=m), idle=None if pump is None else pump.drain)
        if settings.websocket:  # closed candles from the kline stream, the polling feed as the fallback
            from mlrisk.live.feeds.websocket import SocketFeed

            feed = SocketFeed(feed, settings.ws_url, stall_s=settings.websocket_stall_s)
        log.event("start", mode=settings.mode, symbol=symbol, interval=interval, model_md5=model.md5["models/model.keras"],
                  rev=model.rev, resume_after=bot.last_processed, market=settings.market,
                  feed="websocket" if settings.websocket else "polling")
        mismatch = candles_warning(model.params.data.market, settings.market)
        if mismatch:
            log.event("warning", message=mismatch)
        try:
            reason = run_paper(bot, feed, stop)
        finally:
            if pump is not None:
                pump.close()
            if settings.websocket:
                feed.close()
            if settings.flatten_on_stop and stop.reason is not None:
                out = bot.flatten()
                if out is not None and len(out[1]):
                    log.event("flattened", equity=round(out[0], 2), trades=len(out[1]))
        log.event("stop", reason=reason, last_candle=bot.last_processed,
                  equity=None if bot.state is None else round(bot.state.last_equity, 2))
        return ExitCode.OK
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        watching.close()  # after the stop line (or says why there was none)
        store.close()
        log.close()


def candles_warning(trained_market: str, live_market: str) -> str | None:
    """The warning when the pinned run learned and backtested on another market's candles
    (``data.market``) than the one the bot decides and trades on (``settings.market``); None when
    they agree (the default: a strategy that shorts or levers is fetched, trained and backtested on
    the perpetual, and traded on futures)."""
    if trained_market == live_market:
        return None
    return (f"the model was trained on {trained_market} candles; it now decides on {live_market} candles, whose prices "
            f"differ by the basis (train on data.market {live_market} to remove the difference)")
