"""DVC stage `check_params`: validate the whole params.yaml -> reports/params_ok.txt.

Every other stage is downstream of it, so `dvc repro` (with or without a target) stops with
mlrisk's one-line message on any invalid params file, even when no stage reads the bad key.
The output is the same text for every valid file, so DVC re-runs nothing else because of it."""

import sys

from mlrisk.stage import run_stage
from mlrisk.io import write_text

OK = "params.yaml is valid (checked by stages/check_params.py)\n"


def body(params, args) -> None:  # run_stage has validated the file by now
    write_text(args.out, OK)
    print(f"check_params: {args.params} is valid")


def add_args(p):
    p.add_argument("--out", default="reports/params_ok.txt", help="marker written when the file is valid")


if __name__ == "__main__":
    sys.exit(run_stage("check_params", __doc__, body, add_args, removes_outputs=False))
