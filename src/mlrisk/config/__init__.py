"""``params.yaml``: one pydantic model per section, unknown keys forbidden, ranges checked.

One module per section, so a stage imports (and DVC makes it depend on) only the sections it reads:
:mod:`~mlrisk.config.data`, :mod:`~mlrisk.config.features`, :mod:`~mlrisk.config.split`,
:mod:`~mlrisk.config.train`, :mod:`~mlrisk.config.evaluate`, :mod:`~mlrisk.config.backtest`;
:mod:`~mlrisk.config.params` is the whole file with its cross-section checks (the ``check_params``
stage, the CLI); :mod:`~mlrisk.config.base` reads the file and formats errors as one line.
Units: all rates, returns, offsets and fees are fractions (0.001 = 0.1 %), except ``slippage_bps``
(basis points); candle counts are integers; dates are UTC.

This file imports nothing: importing any section runs it first.
"""
