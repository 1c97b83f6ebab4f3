"""Benchmark: training throughput (sequences/s) and single-candle inference latency (ms).

Uses params.yaml's features and network on the shipped sample data. Latency is measured two
ways: the model call alone on one window, and the live path (features + scaler + model) from
raw candles via mlrisk.model.inference.Predictor. Prints figures; asserts nothing.

    python bench/train.py [--epochs 2] [--calls 300] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()

    from mlrisk.model.tfquiet import import_tensorflow

    tf = import_tensorflow()
    from mlrisk.config.params import load_params
    from mlrisk.data.sources import get_candles
    from mlrisk.model.inference import Predictor
    from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
    from mlrisk.model.training import fit

    params = load_params(args.params)
    candles, _ = get_candles(params.data.model_copy(update={"source": "sample"}))
    ds, spec = build_dataset(candles, params.features, params.split, params.data.interval)
    tr = window_arrays(part_frame(ds, "train"), spec.features)
    va = window_arrays(part_frame(ds, "val"), spec.features)
    tp = params.train.model_copy(update={"patience": 0})
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    layers = ", ".join(f"{lp.type}({lp.units})" for lp in tp.layers)
    print(f"device {device}, {os.cpu_count()} cores; network [{layers}] dense {tp.dense}; "
          f"{len(tr[1])} train windows of {spec.seq_len}x{len(spec.features)}, batch {tp.batch_size}")

    fit(tp, spec.seq_len, spec.n_classes, tr, va, verbose=0, epochs=1)  # warm-up: graph tracing
    t0 = time.perf_counter()
    res = fit(tp, spec.seq_len, spec.n_classes, tr, va, verbose=0, epochs=args.epochs)
    secs = time.perf_counter() - t0
    print(f"training: {args.epochs} epochs in {secs:.2f} s (incl. validation) -> {len(tr[1]) * args.epochs / secs:,.0f} sequences/s")

    model = res.model
    window = spec.latest_window(candles).astype("float32")
    for _ in range(20):
        model(window, training=False)
    lat = []
    for _ in range(args.calls):
        t = time.perf_counter()
        model(window, training=False)
        lat.append((time.perf_counter() - t) * 1000)
    print(f"inference, eager model call on one window: median {np.median(lat):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms ({args.calls} calls)")
    from mlrisk.model.inference import compiled_inference

    infer = compiled_inference(model, spec.seq_len, len(spec.features))
    for _ in range(20):
        infer(window)
    lat = []
    for _ in range(args.calls):
        t = time.perf_counter()
        infer(window)
        lat.append((time.perf_counter() - t) * 1000)
    print(f"inference, compiled model call on one window: median {np.median(lat):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms")

    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "m.keras")
        spec.save(Path(d) / "p.json")
        pred = Predictor(Path(d) / "m.keras", Path(d) / "p.json")
        recent = candles.iloc[-(spec.seq_len + spec.warmup + 50):]
        for _ in range(20):
            pred.predict_latest(recent)
        lat = []
        for _ in range(args.calls):
            t = time.perf_counter()
            pred.predict_latest(recent)
            lat.append((time.perf_counter() - t) * 1000)
    print(f"inference, live path (features + scaler + model) on the latest candle: median {np.median(lat):.2f} ms, "
          f"p99 {np.percentile(lat, 99):.2f} ms")


if __name__ == "__main__":
    main()
