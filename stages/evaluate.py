"""DVC stage `evaluate`: model + test part -> reports/metrics/evaluate.json, reports/predictions.parquet,
DVC plot data in reports/plots/, and reports/evaluate/walk_forward.csv (one row per fold; no rows when
walk-forward is off). The report stage draws the charts."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.stage import run_stage
from mlrisk.errors import DataError
from mlrisk.io import read_parquet, write_csv, write_json, write_parquet


def body(params, args) -> None:
    from mlrisk.model.tfquiet import import_tensorflow

    import_tensorflow()
    from mlrisk.evaluation.confidence import calibration_table, confidence_table, coverage_table
    from mlrisk.evaluation.scoring import baseline_probabilities, predictions_table, score
    from mlrisk.model.network import load_model
    from mlrisk.data.preprocess import PreprocessSpec, window_arrays
    from mlrisk.model.inference import predict_p_up

    data = Path(args.data_dir)
    for p in (data / "train.parquet", data / "test.parquet", Path(args.model), Path(args.spec)):
        if not p.exists():
            raise DataError(f"{p} not found: run `dvc repro train` first")
    spec = PreprocessSpec.load(args.spec)
    model = load_model(args.model)
    train, test = (read_parquet(data / f"{p}.parquet", "run `dvc repro preprocess`") for p in ("train", "test"))
    ep = params.evaluate

    x, ends_all, _ = window_arrays(test, spec.features, only_used=False)
    p_all = predict_p_up(model, x, ends_all, spec.seq_len)
    pred = predictions_table(test, ends_all, p_all)

    y_all = test["label"].to_numpy()[ends_all]
    scored = np.isin(y_all, (0, 1)) & test["use"].to_numpy()[ends_all]  # labelled up/down windows
    y, p, ends = y_all[scored].astype(int), p_all[scored], ends_all[scored]
    bl = baseline_probabilities(train, test, spec.features, ends, seed=params.train.seed)
    report = score(y, p, bl)
    report["n_test_candles"] = int(len(test))
    report["n_predictions"] = int(len(ends_all))
    report["n_unlabelled"] = int((~scored).sum())

    conf = confidence_table(y, p, ep.confidence_bins)
    cov = coverage_table(y, p)
    calib = calibration_table(y, p, ep.calibration_bins)

    if ep.walk_forward.folds > 0:
        from mlrisk.evaluation.walkforward import walk_forward

        raw = Path(args.raw_dir) / f"{params.data.symbol}-{params.data.interval}.parquet"
        table, summary = walk_forward(read_parquet(raw, "run `dvc repro fetch`"), params, ep.walk_forward.folds, ep.walk_forward.epochs)
        report["walk_forward"] = summary
    else:
        table = pd.DataFrame({"fold": pd.Series(dtype="int64")})
    write_csv(Path(args.charts_dir) / "walk_forward.csv", table)

    plots = Path(args.plots_dir)
    for name, df in (("confidence", conf), ("coverage", cov), ("calibration", calib)):
        write_csv(plots / f"{name}.csv", df)
    write_parquet(args.predictions, pred)
    best_acc = report["baselines"][report["best_baseline"]]["accuracy"]
    write_json(args.metrics, report)
    m = report["model"]
    print(f"evaluate: accuracy {m['accuracy']:.4f}, balanced {m['balanced_accuracy']:.4f}, AUC {m['roc_auc']:.4f} "
          f"on {m['n']} test rows; best baseline {report['best_baseline']} {best_acc:.4f}\n"
          f"evaluate: {report['verdict']}")


def add_args(p):
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--raw-dir", default="data/raw")
    p.add_argument("--spec", default="models/preprocess.json")
    p.add_argument("--model", default="models/model.keras")
    p.add_argument("--metrics", default="reports/metrics/evaluate.json")
    p.add_argument("--predictions", default="reports/predictions.parquet")
    p.add_argument("--plots-dir", default="reports/plots")
    p.add_argument("--charts-dir", default="reports/evaluate")


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", __doc__, body, add_args))
