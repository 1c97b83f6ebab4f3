"""DVC stage `evaluate`: scores P(up) against the baselines -> reports/metrics/evaluate.json,
reports/predictions.parquet (the period the backtest reports), reports/predictions_select.parquet (the
period its sweep is ranked on), DVC plot data in reports/plots/, and reports/evaluate/walk_forward.csv.
`evaluate.mode: split` scores the pinned model on the test part; `walk_forward` retrains before each
test block over the whole history but the holdout (fold cache: models/folds/). The report stage draws
the charts."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.config.data import DataParams
from mlrisk.config.evaluate import EvaluateParams
from mlrisk.config.features import FeatureParams
from mlrisk.config.train import TrainParams
from mlrisk.stage import run_stage
from mlrisk.errors import DataError
from mlrisk.io import read_parquet, write_csv, write_json, write_parquet, write_text


def body(params, args) -> None:
    from mlrisk.model.tfquiet import import_tensorflow

    import_tensorflow()
    from mlrisk.evaluation.confidence import calibration_table, confidence_table, coverage_table

    ep = params.evaluate
    folds = Path(args.folds_dir)
    folds.mkdir(parents=True, exist_ok=True)  # a DVC output in either mode
    if not (folds / "README.txt").exists():
        write_text(folds / "README.txt", "Walk-forward fold cache (evaluate.mode: walk_forward): one parquet per fold, named by the\n"
                   "hash of its candles, parameters and code. Safe to delete: folds are then retrained.\n")
    if ep.mode == "walk_forward":
        report, pred, select, table, y, p = _walk_forward(params, args)
    else:
        report, pred, select, y, p = _split(params, args)
        table = pd.DataFrame({"fold": pd.Series(dtype="int64")})
    report = {"mode": ep.mode, "holdout_candles": ep.holdout, **report}
    conf = confidence_table(y, p, ep.confidence_bins)
    cov = coverage_table(y, p)
    calib = calibration_table(y, p, ep.calibration_bins)

    write_csv(Path(args.charts_dir) / "walk_forward.csv", table)
    plots = Path(args.plots_dir)
    for name, df in (("confidence", conf), ("coverage", cov), ("calibration", calib)):
        write_csv(plots / f"{name}.csv", df)
    write_parquet(args.predictions, pred)
    write_parquet(args.selection_predictions, select)
    write_json(args.metrics, report)
    m = report["model"]
    best_acc = report["baselines"][report["best_baseline"]]["accuracy"]
    w = report.get("walk_forward", {})
    where = (f"{w['folds']} walk-forward folds, {w['folds_beating_best_baseline']} of them significantly above their "
             f"best baseline ({m['n']} out-of-sample rows)" if ep.mode == "walk_forward" else f"{m['n']} test rows")
    print(f"evaluate: accuracy {m['accuracy']:.4f}, balanced {m['balanced_accuracy']:.4f}, AUC {m['roc_auc']:.4f} "
          f"on {where}; best baseline {report['best_baseline']} {best_acc:.4f}\n"
          f"evaluate: {report['verdict']}")


def _split(params, args):
    """Score the pinned model on the split's test part; P(up) on the validation part too (the
    backtest ranks its sweep there, not on the test part it reports)."""
    from mlrisk.data.preprocess import PreprocessSpec, window_arrays
    from mlrisk.evaluation.baselines import baseline_probabilities
    from mlrisk.evaluation.scoring import predictions_table, score
    from mlrisk.model.inference import predict_p_up
    from mlrisk.model.network import load_model

    data = Path(args.data_dir)
    for f in (*(data / f"{p}.parquet" for p in ("train", "val", "test")), Path(args.model), Path(args.spec)):
        if not f.exists():
            raise DataError(f"{f} not found: run `dvc repro train` first")
    spec = PreprocessSpec.load(args.spec)
    model = load_model(args.model)
    train, val, test = (read_parquet(data / f"{p}.parquet", "run `dvc repro preprocess`") for p in ("train", "val", "test"))

    def predict(frame):
        x, ends_all, _ = window_arrays(frame, spec.features, only_used=False)
        p_all = predict_p_up(model, x, ends_all, spec.seq_len)
        return predictions_table(frame, ends_all, p_all), ends_all, p_all

    pred, ends_all, p_all = predict(test)
    y_all = test["label"].to_numpy()[ends_all]
    scored = np.isin(y_all, (0, 1)) & test["use"].to_numpy()[ends_all]  # labelled up/down windows
    y, p, ends = y_all[scored].astype(int), p_all[scored], ends_all[scored]
    bl = baseline_probabilities(train, test, spec.features, ends, seed=params.train.seed)
    report = score(y, p, bl, seed=params.train.seed)
    report["n_test_candles"] = int(len(test))
    report["n_predictions"] = int(len(ends_all))
    report["n_unlabelled"] = int((~scored).sum())
    return report, pred, predict(val)[0], y, p


def _walk_forward(params, args):
    """Retrain before each test block over the whole history but the holdout; stitch the folds'
    out-of-sample predictions; the earlier half of the folds is the sweep's selection period."""
    from mlrisk.data.klines import CANDLE_COLUMNS
    from mlrisk.evaluation.folds import split_periods
    from mlrisk.evaluation.walkforward import run_walk_forward

    from mlrisk.data.point_in_time import model_candles
    from mlrisk.data.preprocess import load_others

    candles = model_candles(args.raw_dir, params.data, params.features)  # features.candles, inputs joined point-in-time
    wf = params.evaluate.walk_forward

    res = run_walk_forward(candles, params, cache_dir=args.folds_dir, end=len(candles) - params.evaluate.holdout,
                           others=load_others(args.raw_dir, params.data.interval, params.data.others))
    rows = res.predictions[res.predictions["scored"]]
    report = dict(res.pooled)
    t = res.folds
    report["walk_forward"] = {
        "folds": int(len(t)), "folds_above_best_baseline": int((t["margin"] > 0).sum()),
        "folds_beating_best_baseline": int(t["beats_best_baseline"].sum()),  # their 90 % CI above zero (p < ALPHA)
        "accuracy_mean": float(t["accuracy"].mean()), "accuracy_std": float(t["accuracy"].std(ddof=1)) if len(t) > 1 else 0.0,
        "margin_mean": float(t["margin"].mean()), "margin_std": float(t["margin"].std(ddof=1)) if len(t) > 1 else 0.0,
        "window": wf.window, "train": wf.train, "test": wf.test, "embargo": wf.embargo, "cached_folds": res.cached,
    }
    report["n_predictions"] = int(res.predictions["p_up"].notna().sum())
    pred = res.predictions[[c for c in CANDLE_COLUMNS if c in res.predictions.columns] + ["p_up", "label", "fold"]]
    select = split_periods(pred)[0] if pred["fold"].nunique() > 1 else pred.iloc[:0]
    return report, pred, select, t, rows["label"].to_numpy().astype(int), rows["p_up"].to_numpy()


def add_args(p):
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--raw-dir", default="data/raw")
    p.add_argument("--spec", default="models/preprocess.json")
    p.add_argument("--model", default="models/model.keras")
    p.add_argument("--metrics", default="reports/metrics/evaluate.json")
    p.add_argument("--predictions", default="reports/predictions.parquet")
    p.add_argument("--selection-predictions", default="reports/predictions_select.parquet",
                   help="P(up) on the period the backtest's sweep is ranked on (validation part, or earlier folds)")
    p.add_argument("--folds-dir", default="models/folds", help="walk-forward fold cache (content-addressed)")
    p.add_argument("--plots-dir", default="reports/plots")
    p.add_argument("--charts-dir", default="reports/evaluate")


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", __doc__, body, add_args, sections={
        "evaluate": EvaluateParams, "data": DataParams, "train": TrainParams, "features": FeatureParams}))
