"""Leveraged long/short threshold backtest on the model's predictions.

See :mod:`mlrisk.backtest.engine` for every assumption; the signal, order intents, sizing and
protective levels live in :mod:`mlrisk.strategy`, shared with the live bot;
the live bot's :mod:`mlrisk.live.sim_account` steps one account candle by candle (the paper broker) and saves it.
:mod:`mlrisk.backtest.futures` turns perpetual-futures data (funding history, leverage brackets, an
exchange-info snapshot) into the engine's inputs.
"""
