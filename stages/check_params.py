"""DVC stage `check_params`: validate the whole params.yaml -> reports/params_ok.txt.

Every other stage is downstream of it, so `dvc repro` (with or without a target) stops with
mlrisk's one-line message on any invalid params file, even when no stage reads the bad key (every
other stage validates only the sections it reads, so it depends on those models' code alone). It
also checks that every key a stage declares in dvc.yaml (`params:`) is present, which DVC needs.
The output is the same text for every valid file, so DVC re-runs nothing else because of it."""

import sys
from pathlib import Path

import yaml

from mlrisk.config.base import read_params_file
from mlrisk.config.params import market_warning, missing_keys, parse_params
from mlrisk.stage import run_stage
from mlrisk.errors import ParamsError
from mlrisk.io import write_text

OK = "params.yaml is valid (checked by stages/check_params.py)\n"


def declared_params(dvc_yaml: Path) -> list[str]:
    """The params.yaml keys the stages of ``dvc_yaml`` declare (``params:`` entries)."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    keys = []
    for stage in stages.values():
        for entry in stage.get("params", []):
            if isinstance(entry, str):
                keys.append(entry)
            else:  # {other_file.yaml: [keys]}: only params.yaml is checked here
                keys += [k for f, ks in entry.items() if f == "params.yaml" for k in (ks or [])]
    return list(dict.fromkeys(keys))


def body(params, args) -> None:  # run_stage has read the file and checked its top-level keys
    raw = read_params_file(args.params)
    params = parse_params(raw, str(args.params))  # every section, and the rules across sections
    if args.dvc_yaml.exists():
        missing = missing_keys(raw, declared_params(args.dvc_yaml))
        missing = sorted(k for k in missing if not any(k.startswith(m + ".") for m in missing))  # a section, not each key
        if missing:
            raise ParamsError(f"{args.params} lacks {', '.join(missing)}, which the stages in {args.dvc_yaml} read: "
                              f"add them (`mlrisk check-params` prints every value)")
    warning = market_warning(params)  # a valid file that backtests a futures-only strategy on spot candles
    if warning:
        print(f"warning: check_params: {warning}", file=sys.stderr)
    write_text(args.out, OK)
    print(f"check_params: {args.params} is valid")


def add_args(p):
    p.add_argument("--out", default="reports/params_ok.txt", help="marker written when the file is valid")
    p.add_argument("--dvc-yaml", default=Path("dvc.yaml"), type=Path, help="pipeline whose declared params must exist")


if __name__ == "__main__":
    sys.exit(run_stage("check_params", __doc__, body, add_args, removes_outputs=False))
