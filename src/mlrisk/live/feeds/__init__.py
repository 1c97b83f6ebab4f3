"""Where closed candles come from: :mod:`~mlrisk.live.feeds.polling` (REST, with the staleness
watchdog), :mod:`~mlrisk.live.feeds.websocket` (the kline stream, polling as the fallback) and
:mod:`~mlrisk.live.feeds.replay` (a stored candle file, and the gap filling they share)."""
