"""The live bot (issue 11): ``mlrisk live`` / ``python -m mlrisk.live``.

Built and tested, one concern per module (imports run one way: venue <- execution <- app):

- :mod:`mlrisk.live.cli`: the command line (every setting a flag); :mod:`mlrisk.live.app`: the wiring
  (settings -> model -> state store -> execution -> feed -> bot), one-line errors before any network call.
- :mod:`mlrisk.live.model`: the pinned model (MD5s against ``dvc.lock``, symbol/interval/features,
  the backtest parameters the backtest stage ran), ``--rev`` through ``dvc.api``.
- :mod:`mlrisk.live.step`: one candle's decision, pure: the backtest's own per-candle step
  (:class:`mlrisk.live.sim_account.AccountState`) plus the risk controls of :mod:`mlrisk.live.risk`.
- :mod:`mlrisk.live.loop`: the bot around it: inference, the state store commit, the journal line
  (:mod:`mlrisk.live.journal`), replay, the paper/exchange loop, the kill switch.
- :mod:`mlrisk.live.feeds`: closed candles from REST polling (with a staleness watchdog), the kline
  websocket, or a stored file.
- :mod:`mlrisk.live.execution`: testnet/live: orders written ahead then sent once, unknown outcomes
  queried by client id, reconciliation at start (settle, adopt, position check, halt); spot and
  USDT-M futures (one-way, isolated, leverage: both sides, limit entries, take-profit/stop algo
  orders, timed exits, the position checked against ``positionRisk``), through
  :mod:`mlrisk.live.venue`: Binance (every endpoint, error code and status) as normalised order,
  fill and position reports.
- :mod:`mlrisk.live.settings`, :mod:`mlrisk.live.client_ids`, :mod:`mlrisk.live.filters`,
  :mod:`mlrisk.live.state`: settings, deterministic client order ids, exchange filters, the SQLite
  state store with write-ahead orders.
- :mod:`mlrisk.live.observe`: the journal's observer, feeding :mod:`mlrisk.live.metrics` (a
  Prometheus endpoint) and :mod:`mlrisk.live.alerts` (apprise messages), both off by default.

Not built yet: a user-data stream (fills are learnt by polling at each close), hedge mode.
"""
