"""DVC stage `preprocess`: raw candles -> data/processed/{train,val,test}.parquet + models/preprocess.json.
The last `evaluate.holdout` candles are left out: only `mlrisk holdout` ever sees them. With
`evaluate.mode: walk_forward` the pinned model's parts are the most recent training window and its
validation tail (`split.method: final`); the folds are scored by the evaluate stage."""

import sys
from pathlib import Path

from mlrisk.stage import run_stage
from mlrisk.io import write_parquet
from mlrisk.data.point_in_time import model_candles
from mlrisk.data.preprocess import build_dataset, load_others, part_frame
from mlrisk.config.data import DataParams
from mlrisk.config.evaluate import EvaluateParams
from mlrisk.config.features import FeatureParams
from mlrisk.config.split import SplitParams
from mlrisk.data.split import PARTS


def body(params, args) -> None:
    d = params.data
    candles = model_candles(args.raw_dir, d, params.features)  # features.candles, inputs joined point-in-time
    if params.evaluate.holdout:
        candles = candles.iloc[: len(candles) - params.evaluate.holdout]
    split = params.split
    if params.evaluate.mode == "walk_forward":  # pin a model of the most recent window, as the next fold's would be
        wf = params.evaluate.walk_forward
        if wf.window == "rolling":
            candles = candles.iloc[-wf.train:]
        split = SplitParams(method="final", val=wf.val)
    others = load_others(args.raw_dir, d.interval, d.others)
    ds, spec = build_dataset(candles, params.features, split, d.interval, others=others)
    for part in PARTS:  # one file per part: train never even opens the test file
        write_parquet(Path(args.out_dir) / f"{part}.parquet", part_frame(ds, part))
    spec.save(args.spec)
    s = spec.split
    print("preprocess: " + ", ".join(f"{p} {s[p]['samples']} samples ({s[p]['first'][:10]}..{s[p]['last'][:10]})" if s[p]["first"]
                                     else f"{p}: none (walk-forward scores the folds)" for p in ("train", "val", "test"))
          + f"; purge {s['purge']} candles"
          + (f"; gaps: {s['gaps']['windows_dropped']} windows and {s['gaps']['labels_dropped']} labels spanning one dropped" if "gaps" in s else "")
          + f" -> {args.out_dir}/{{train,val,test}}.parquet")


def add_args(p):
    p.add_argument("--raw-dir", default="data/raw")
    p.add_argument("--out-dir", default="data/processed")
    p.add_argument("--spec", default="models/preprocess.json")


if __name__ == "__main__":
    sys.exit(run_stage("preprocess", __doc__, body, add_args, sections={
        "data": DataParams, "features": FeatureParams, "split": SplitParams, "evaluate": EvaluateParams}))
