"""Leveraged long/short threshold backtest on the model's predictions.

See :mod:`mlrisk.backtest.engine` for every assumption; the signal and order decision live in
:mod:`mlrisk.strategy`, shared with the live bot.
"""
