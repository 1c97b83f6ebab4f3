"""Command-line plumbing shared by the stage scripts: argument parsing, logging, and turning
user-fixable errors into one line on stderr and a non-zero exit code (no traceback wall)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from mlrisk.config import Params, load_params
from mlrisk.errors import MlriskError

EXIT_USER_ERROR = 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter


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


def main(argv: list[str] | None = None) -> int:
    """``mlrisk check-params``: validate params.yaml and print the effective values."""
    parser = argparse.ArgumentParser(prog="mlrisk", description="mlrisk helper commands")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check-params", help="validate params.yaml and print the effective parameters")
    p.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except MlriskError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    import yaml

    print(yaml.safe_dump(params.model_dump(), sort_keys=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
