"""The live bot (issue 11): ``mlrisk live`` / ``python -m mlrisk.live``.

Built and tested:

- :mod:`mlrisk.live.cli`: the entrypoint; every setting a flag; one-line errors before any network call.
- :mod:`mlrisk.live.model`: the pinned model (MD5s against ``dvc.lock``, symbol/interval/features,
  the backtest parameters the backtest stage ran), ``--rev`` through ``dvc.api``.
- :mod:`mlrisk.live.paper`: one candle's decision, pure: the backtest's own per-candle step
  (:class:`mlrisk.live.account.AccountState`) plus the risk controls.
- :mod:`mlrisk.live.loop`: the I/O around it: inference, the state store commit, the log line,
  replay from a file, REST polling with a staleness watchdog, the kill switch.
- :mod:`mlrisk.live.broker`: testnet/live: orders written ahead then sent once, unknown outcomes
  queried by client id, reconciliation at start (settle, adopt, position check, halt); the spot broker.
- :mod:`mlrisk.live.futures_broker`: USDT-M futures (one-way, isolated, leverage): both sides, limit
  entries, take-profit/stop algo orders, timed exits, the position checked against ``positionRisk``.
- :mod:`mlrisk.live.settings`, :mod:`mlrisk.live.client_ids`, :mod:`mlrisk.live.filters`,
  :mod:`mlrisk.live.state`: settings, deterministic client order ids, exchange filters, the SQLite
  state store with write-ahead orders.

Not built yet: a user-data stream (fills are learnt by polling at each close), hedge mode.
"""
