"""DVC stage `report`: everything the earlier stages wrote -> reports/index.html, one self-contained
dashboard (opens offline from the file system; it also reads the scaled features in data/processed/
and the holdout log holdout.json), and reports/metrics/headline.json (the numbers that
`dvc exp show` lists first). Ends by printing the dashboard's path and the headline numbers."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from mlrisk.config.params import Params
from mlrisk.stage import run_stage
from mlrisk.errors import DataError
from mlrisk.io import write_json


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def provenance(params, raw: Path, model: Path) -> dict[str, str]:
    """Git revision (and whether the tree is dirty), short hashes of the params, the data and the model."""
    from mlrisk.hashing import sha256_file

    for p in (raw, model):
        if not p.exists():
            raise DataError(f"{p} not found: run `dvc repro` first")
    rev = _git("rev-parse", "--short=10", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    blob = json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()
    return {"git": rev or "not a git checkout", "dirty": "true" if dirty else "false",
            "params": hashlib.sha256(blob).hexdigest()[:10], "data": sha256_file(raw)[:10], "model": sha256_file(model)[:10]}


def body(params, args) -> None:
    from plotly.offline import get_plotlyjs

    from mlrisk.report.dashboard import build, headline, headline_lines, read_inputs
    from mlrisk.report.html import write_page

    t0 = time.perf_counter()
    inp = read_inputs(args.reports, args.processed_dir, args.preprocess, args.holdout)
    raw = Path(args.raw_dir) / f"{params.data.symbol}-{params.data.interval}.parquet"
    page = build(inp, params, provenance(params, raw, Path(args.model)), get_plotlyjs())
    out = Path(args.out)
    write_page(out, page)
    write_json(args.headline, headline(inp.evaluate, inp.backtest))
    secs = time.perf_counter() - t0
    print(f"report: dashboard {out} ({out.stat().st_size / 1e6:.1f} MB, {secs:.1f} s): open {out.resolve().as_uri()}")
    for line in headline_lines(inp.evaluate, inp.backtest):
        print(f"report: {line}")


def add_args(p):
    p.add_argument("--reports", default="reports", help="directory the earlier stages wrote to")
    p.add_argument("--raw-dir", default="data/raw")
    p.add_argument("--model", default="models/model.keras")
    p.add_argument("--processed-dir", default="data/processed", help="scaled train/test features (the Features charts)")
    p.add_argument("--preprocess", default="models/preprocess.json")
    p.add_argument("--holdout", default="holdout.json", help="the holdout log (absent: no uses)")
    p.add_argument("--out", default="reports/index.html")
    p.add_argument("--headline", default="reports/metrics/headline.json")


if __name__ == "__main__":
    sys.exit(run_stage("report", __doc__, body, add_args,  # every section: the header hashes them all
                       sections={name: f.annotation for name, f in Params.model_fields.items()}))
