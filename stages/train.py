"""DVC stage `train`: train/val parts -> models/model.keras + models/model.json, per-epoch logs in reports/train/ (dvclive).

The test part is not read here."""

import json
import platform
import sys
from pathlib import Path

from mlrisk.config.train import TrainParams
from mlrisk.stage import run_stage
from mlrisk.hashing import sha256_file
from mlrisk.io import read_parquet, write_json
from mlrisk.data.preprocess import PreprocessSpec, window_arrays


def body(params, args) -> None:
    from mlrisk.model.tfquiet import import_tensorflow

    import_tensorflow()
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback
    import keras
    import tensorflow as tf

    from mlrisk import __version__
    from mlrisk.model.network import save_model
    from mlrisk.model.training import fit

    data = Path(args.data_dir)
    paths = {p: data / f"{p}.parquet" for p in ("train", "val")}
    frames = {p: read_parquet(path, "run `dvc repro preprocess`") for p, path in paths.items()}
    spec = PreprocessSpec.load(args.spec)
    tr = window_arrays(frames["train"], spec.features)
    va = window_arrays(frames["val"], spec.features)
    tp = params.train
    gpus = tf.config.list_physical_devices("GPU")
    print(f"train: {len(tr[1])} train / {len(va[1])} val windows of {spec.seq_len}x{len(spec.features)}, "
          f"device: {'GPU ' + gpus[0].name if gpus else 'CPU'}", file=sys.stderr)
    with Live(dir=args.log_dir, save_dvc_exp=False, dvcyaml=None) as live:
        res = fit(tp, spec.seq_len, spec.n_classes, tr, va, callbacks=[DVCLiveCallback(live=live)])
        best = res.best_epoch - 1
        live.summary["best_epoch"] = res.best_epoch
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if k in res.history:
                live.summary[f"best_{k}"] = res.history[k][best]
    model_path = Path(args.model)
    save_model(res.model, model_path)
    write_json(args.meta, {
        "preprocess": spec.to_json(),
        "train_params": tp.model_dump(),
        "data_sha256": {p: sha256_file(path) for p, path in paths.items()},
        "versions": {"mlrisk": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
                     "python": platform.python_version()},
        "device": "GPU" if gpus else "CPU",
        "train_seconds": round(res.seconds, 3),
        "epochs_run": res.epochs_run,
        "best_epoch": res.best_epoch,
        "n_train": res.n_train,
        "n_val": res.n_val,
        "class_weight": res.class_weight,
        "history": res.history,
    })
    print(f"train: best epoch {res.best_epoch}/{res.epochs_run}, val_loss {res.history['val_loss'][best]:.4f}, "
          f"val_accuracy {res.history['val_accuracy'][best]:.4f}, {res.seconds:.1f} s -> {model_path}")


def add_args(p):
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--spec", default="models/preprocess.json")
    p.add_argument("--model", default="models/model.keras")
    p.add_argument("--meta", default="models/model.json")
    p.add_argument("--log-dir", default="reports/train")


if __name__ == "__main__":
    sys.exit(run_stage("train", __doc__, body, add_args, sections={"train": TrainParams}))
