"""DVC stage `fetch`: candles -> data/raw/{SYMBOL}-{INTERVAL}.parquet + reports/data_quality.json."""

import sys
from pathlib import Path

from mlrisk.stage import run_stage
from mlrisk.data.sources import get_candles, read_existing
from mlrisk.io import write_json, write_parquet


def body(params, args) -> None:
    d = params.data
    out = Path(args.out_dir) / f"{d.symbol}-{d.interval}.parquet"
    existing = read_existing(out) if d.source == "binance" else None
    candles, quality = get_candles(d, existing)
    write_parquet(out, candles)
    write_json(args.quality, quality)
    print(f"fetch: {quality['rows']} candles {quality['first_candle']} .. {quality['last_candle']}, "
          f"{quality['gaps']} gap(s), {quality['filled_candles']} filled -> {out}")


def add_args(p):
    p.add_argument("--out-dir", default="data/raw", help="output folder (default: data/raw)")
    p.add_argument("--quality", default="reports/data_quality.json", help="data-quality metrics file")


if __name__ == "__main__":
    sys.exit(run_stage("fetch", __doc__, body, add_args))
