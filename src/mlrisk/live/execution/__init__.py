"""Execution: the step's orders made real (write-ahead send, settlement of unknown outcomes,
reconciliation: :mod:`~mlrisk.live.execution.base`; spot: :mod:`~mlrisk.live.execution.spot`;
USDT-M futures: :mod:`~mlrisk.live.execution.futures`)."""
