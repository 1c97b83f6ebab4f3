"""The ``mlrisk`` command: helper subcommands for what users do often (see ``mlrisk --help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlrisk.config import load_params
from mlrisk.errors import MlriskError
from mlrisk.stage import EXIT_USER_ERROR


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
