"""What every stage script shares: ``--params``/``--verbose`` parsing, logging, validating the params
sections the stage reads first, and turning user-fixable errors into one line on stderr and exit
code 2 (no traceback wall). The whole file is validated by the ``check_params`` stage, which every
stage is downstream of; a stage imports only the section models it reads, so DVC re-runs it only
when one of them changes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from mlrisk.config.base import _Section, load_sections
from mlrisk.errors import MlriskError
from mlrisk.exit_codes import ExitCode
from mlrisk.logs import setup_logging


def outputs_note(name: str, removes_outputs: bool) -> str:
    """What became of the stage's previous outputs after a failure, and how to get them back.

    Every output is written atomically (:mod:`mlrisk.io`), so a file is the old one or the new
    one, never half-written. Run by hand, a stage that fails leaves them as they were. Under
    ``dvc repro`` (DVC sets ``DVC_STAGE``), DVC has already deleted the outputs of a stage that
    does not ``persist`` them before running it; they come back with ``dvc checkout`` or, once
    the inputs are as they were at the last good run, from DVC's run cache on the next
    ``dvc repro``."""
    if os.environ.get("DVC_STAGE") and removes_outputs:
        return (f"dvc removed this stage's previous outputs before running it: `dvc checkout {name}` brings back "
                f"the last good ones (and the next `dvc repro` with the inputs of that run restores them from DVC's run cache)")
    return "outputs left as they were"


def run_stage(name: str, description: str, body: Callable[[Any, argparse.Namespace], None],
              add_args: Callable[[argparse.ArgumentParser], None] | None = None, argv: list[str] | None = None,
              removes_outputs: bool = True, sections: Mapping[str, type[_Section]] | None = None) -> int:
    """Parse ``--params``, validate the ``sections`` the stage reads (name -> section model, e.g.
    ``{"backtest": BacktestParams}``; the top-level keys are checked too), then run ``body`` with
    them (``params.backtest``...).

    ``removes_outputs``: False for a stage whose outputs dvc.yaml marks ``persist`` (DVC keeps
    them when it runs the stage). Returns the exit code (:class:`mlrisk.exit_codes.ExitCode`): OK,
    USER_ERROR (printed as one line; under DVC it also says what became of the previous outputs) or
    INTERRUPTED.
    """
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=description)
    parser.add_argument("--params", default="params.yaml", type=Path, help="parameters file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        params = load_sections(args.params, sections or {})
        body(params, args)
    except MlriskError as e:
        note = f" ({outputs_note(name, removes_outputs)})" if os.environ.get("DVC_STAGE") else ""
        print(f"error: {name}: {e}{note}", file=sys.stderr)
        return ExitCode.USER_ERROR
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted; {outputs_note(name, removes_outputs)}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return ExitCode.OK
