"""Every exit code of mlrisk's commands, in one table: the stage scripts (``stages/*.py`` through
:func:`mlrisk.stage.run_stage`), ``mlrisk`` (:mod:`mlrisk.cli`) and the live bot (``mlrisk live``,
:mod:`mlrisk.live.cli`). No other module writes a literal exit code.

| Code | Name | Meaning | What to do |
|-----:|------|---------|------------|
| 0 | ``OK`` | done; the bot: stopped as asked (kill switch, SIGTERM, end of a replay) | nothing |
| 2 | ``USER_ERROR`` | a user-fixable error, printed as one line ``error: ...`` (bad params or settings, missing file, refused state file, unexplained position) | read the line: it names the fix |
| 3 | ``FEED_STALLED`` | the live bot stopped safely because no candle arrived within ``MLRISK_MAX_STALE_S`` (state saved) | restart once the exchange serves candles again |
| 130 | ``INTERRUPTED`` | interrupted (Ctrl-C, SIGINT; 128 + 2 as shells report it); a stage leaves its previous outputs as they were, the bot its state up to the last processed candle | run again |

``mlrisk repro``/``mlrisk report`` pass DVC's own non-zero exit code through unchanged.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes (see the module docstring's table)."""

    OK = 0
    """Done (the bot: stopped as asked: kill switch, SIGTERM, end of a replay)."""

    USER_ERROR = 2
    """A user-fixable error, printed as one line naming the fix (no traceback)."""

    FEED_STALLED = 3
    """The live bot stopped safely on a stalled candle feed; its state is saved."""

    INTERRUPTED = 130
    """Interrupted by Ctrl-C/SIGINT (128 + signal 2); outputs or state left consistent."""
