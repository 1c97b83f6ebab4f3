"""What every stage script shares: ``--params``/``--verbose`` parsing, logging, validating the whole
params file first, and turning user-fixable errors into one line on stderr and exit code 2 (no
traceback wall)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from mlrisk.config import Params, load_params
from mlrisk.errors import MlriskError

EXIT_USER_ERROR = 2


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("urllib3", "tensorflow", "absl", "h5py", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(name: str, description: str, body: Callable[[Params, argparse.Namespace], None],
              add_args: Callable[[argparse.ArgumentParser], None] | None = None, argv: list[str] | None = None) -> int:
    """Parse ``--params``, validate the whole params file, then run ``body``.

    Returns the exit code: 0 on success, 2 on a user-fixable error (printed as one line).
    """
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=description)
    parser.add_argument("--params", default="params.yaml", type=Path, help="parameters file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        params = load_params(args.params)
        body(params, args)
    except MlriskError as e:
        print(f"error: {name}: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted; outputs left as they were", file=sys.stderr)
        return 130
    return 0
