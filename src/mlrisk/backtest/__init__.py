"""Leveraged long/short threshold backtest on the model's predictions.

See :mod:`mlrisk.backtest.engine` for every assumption; :mod:`mlrisk.backtest.strategy` holds the
decision function shared with the live bot.
"""
