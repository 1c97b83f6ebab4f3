"""The live bot (issue 11), in progress: the foundations exist, the bot itself does not yet.

What exists (each tested on its own):

- :mod:`mlrisk.live.settings`: ``LiveSettings`` (pydantic-settings, ``MLRISK_`` variables and
  ``.env``): mode paper/testnet/live, market, symbol, interval, state file, risk limits; one-line
  errors before any network call; keys from :class:`mlrisk.settings.BinanceSettings`.
- :mod:`mlrisk.live.client_ids`: deterministic client order ids from (prefix, symbol, candle open
  time, leg), parseable back.
- :mod:`mlrisk.live.filters`: Binance exchange filters (tick size, lot/step size, min/max notional)
  applied with ``decimal.Decimal`` before an order is sent.
- :mod:`mlrisk.live.state`: the SQLite state store (WAL, transactions): orders with their state
  machine and write-ahead insert, fills, positions, the per-candle step state, the last processed
  candle, persisted risk counters.

Still to come: the ``mlrisk live`` entrypoint and loop (candles, features, inference, the shared
per-candle step, sending and querying orders), reconciliation at start, the risk controls'
enforcement, paper/replay modes, the chaos and parity tests, and ``bench/live.py``.
"""
