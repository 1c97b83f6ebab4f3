"""``mlrisk live`` / ``python -m mlrisk.live``: the bot's command line.

Every setting of :class:`mlrisk.live.settings.LiveSettings` is a flag (``--max-drawdown 0.1`` =
``MLRISK_MAX_DRAWDOWN=0.1``; flags win over the environment, which wins over ``.env``). Settings,
the pinned model and the parameters are checked before any network call; a problem is one line
``error: live: ...`` and exit code USER_ERROR. Exit codes: :class:`mlrisk.exit_codes.ExitCode` (OK
stopped as asked: kill switch, SIGTERM, end of a replay; USER_ERROR; FEED_STALLED stopped safely on
a stalled candle feed, state saved; INTERRUPTED).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from mlrisk.errors import MlriskError
from mlrisk.exit_codes import ExitCode
from mlrisk.live.app import flag
from mlrisk.logs import setup_logging
from mlrisk.version import VersionAction

DESCRIPTION = """The live bot: trades the pinned model (models/ as recorded in dvc.lock, or --rev) one decision per
closed candle, with the backtest's own per-candle step. Modes: paper (default; simulated fills on live
candles from the exchange: REST polling, or the kline websocket with --websocket), testnet/live (the
same decisions sent as real orders: written ahead, unknown outcomes queried by client id,
reconciliation at start; spot: long-only, leverage 1, market entries; USDT-M futures: both sides,
isolated leverage, market or limit entries, take-profit/stop as exchange-side orders, hold) and
--replay FILE (the same loop over a stored candle file, offline, as fast as it can). The market
defaults to futures when the strategy shorts or uses leverage (the default one does). Every setting
below is also an environment variable MLRISK_<NAME> (or a line in .env); keys are
MLRISK_BINANCE_API_KEY/_SECRET."""


def build_parser() -> argparse.ArgumentParser:
    from mlrisk.live.settings import ENV_ONLY, LiveSettings, Market, Mode

    p = argparse.ArgumentParser(prog="mlrisk live", description=DESCRIPTION)
    g = p.add_argument_group("settings (flag = environment variable MLRISK_<NAME>; MLRISK_ALERT_URLS and the "
                             "MLRISK_BINANCE_* keys are secrets: environment or .env only)")
    for name, f in LiveSettings.model_fields.items():
        if name in ENV_ONLY:
            continue
        env = f"MLRISK_{name.upper()}"
        default = f.default
        shown = "" if default is None else f"; default {default}"  # None: the description says what it means
        help_ = f"{f.description or ''} [{env}{shown}]".replace("%", "%%")
        if f.annotation is bool:
            g.add_argument(flag(name), dest=name, action="store_const", const=True, default=None, help=help_)
        else:
            choices = {"mode": get_args(Mode), "market": get_args(Market)}.get(name)
            g.add_argument(flag(name), dest=name, default=None, choices=choices, metavar=None if choices else name.upper(),
                           help=help_)
    r = p.add_argument_group("model and replay")
    r.add_argument("--repo", default=".", type=Path, help="the project (dvc.lock, params.yaml, models/); default: .")
    r.add_argument("--rev", default=None, help="trade the model of this git revision or tag (read with dvc.api "
                   "from the DVC cache or remote) instead of the working tree's")
    r.add_argument("--replay", default=None, type=Path, metavar="FILE",
                   help="drive the loop from a stored candle file (data/raw/*.parquet or a Binance kline CSV/zip), "
                   "offline, from a fresh temporary state (MLRISK_STATE_FILE is not used; --state-file, --reset-halt "
                   "and the feed, websocket, kill-switch and flatten-on-stop flags are refused); the risk limits apply "
                   "as in paper mode (see --no-risk-limits); prints the trades, the final equity and, when a limit "
                   "bound, when and which")
    r.add_argument("--start", default=None, help="replay: first candle to trade (UTC date/time); earlier candles "
                   "are history only and windows start here, like the evaluate stage's test part")
    r.add_argument("--trades-out", default=None, type=Path, help="replay: write the trades as CSV (the backtest's "
                   "reports/trades.csv columns)")
    r.add_argument("--no-risk-limits", action="store_true", help="paper and --replay only: no daily-loss, drawdown, "
                   "position or orders-per-minute limit (the MLRISK_MAX_* settings above are not applied), like the "
                   "backtest, which has none: for a like-for-like comparison with it")
    r.add_argument("--reset-halt", action="store_true", help="clear a persisted risk halt (drawdown) and start")
    r.add_argument("--check-venue", action="store_true", help="testnet/live: read-only calls that confirm each "
                   "assumption the bot makes about the exchange (docs/live.md 'Checks to do on first use'), one line "
                   "each; exit 0 when all held, 2 otherwise; no order is sent and nothing is changed")
    r.add_argument("--env-file", default=".env", help="the .env file to read (settings and keys)")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging; replay: one line per candle on stderr")
    r.add_argument("--version", action=VersionAction)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the bot; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        from mlrisk.live.app import run

        return run(args)
    except MlriskError as e:
        print(f"error: live: {e}", file=sys.stderr)
        return ExitCode(getattr(e, "exit_code", ExitCode.USER_ERROR))
    except KeyboardInterrupt:
        print("error: live: interrupted; state saved up to the last processed candle", file=sys.stderr)
        return ExitCode.INTERRUPTED
