"""DVC stage `fetch`: candles -> data/raw/{SYMBOL}-{INTERVAL}.parquet + reports/data_quality.json.

Files for ``data.source: file`` must lie in data/files/, the folder this stage depends on, so that
a replaced download re-runs it. The candle file records what made it (source, symbol, interval,
market) in its parquet metadata; the binance source extends only a file it made itself."""

import os
import sys
from pathlib import Path

from mlrisk.config.data import DataParams
from mlrisk.stage import run_stage
from mlrisk.data.sources import METADATA_KEY, get_candles, provenance, read_existing
from mlrisk.errors import DataError
from mlrisk.io import write_json, write_parquet


def check_files_dir(files: list[str], files_dir: Path) -> None:
    """Every ``data.files`` path must lie inside ``files_dir`` (DVC hashes that folder)."""
    root = Path(os.path.abspath(files_dir))
    for f in files:
        if root not in Path(os.path.abspath(f)).parents:
            raise DataError(f"data.files: {f} is outside {files_dir}/: move or copy it there (the fetch stage depends on "
                            f"that folder, so DVC re-runs it when a file there changes) and list it as {files_dir}/{Path(f).name}")


def body(params, args) -> None:
    d = params.data
    out = Path(args.out_dir) / f"{d.symbol}-{d.interval}.parquet"
    if d.source == "file":
        check_files_dir(d.files, Path(args.files_dir))
    existing = read_existing(out, d) if d.source == "binance" else None
    candles, quality = get_candles(d, existing)
    others = {}
    for sym in d.others:  # other symbols for SYMBOL:feature names: same source, interval, market and dates
        od = d.model_copy(update={"symbol": sym, "others": []})
        o_out = Path(args.out_dir) / f"{sym}-{d.interval}.parquet"
        o_candles, o_quality = get_candles(od, read_existing(o_out, od))
        write_parquet(o_out, o_candles, metadata={METADATA_KEY: provenance(od)})
        others[sym] = {k: o_quality[k] for k in ("rows", "first_candle", "last_candle", "gaps", "filled_candles")}
        print(f"fetch: {sym}: {o_quality['rows']} candles, {o_quality['gaps']} gap(s) -> {o_out}")
    if others:
        quality["others"] = others
    write_parquet(out, candles, metadata={METADATA_KEY: provenance(d)})
    write_json(args.quality, quality)
    print(f"fetch: {quality['rows']} candles {quality['first_candle']} .. {quality['last_candle']}, "
          f"{quality['gaps']} gap(s), {quality['filled_candles']} filled ({quality['filled_share']:.2%}) -> {out}")


def add_args(p):
    p.add_argument("--out-dir", default="data/raw", help="output folder (default: data/raw)")
    p.add_argument("--quality", default="reports/data_quality.json", help="data-quality metrics file")
    p.add_argument("--files-dir", default="data/files", help="folder that must hold data.files (default: data/files)")


if __name__ == "__main__":
    sys.exit(run_stage("fetch", __doc__, body, add_args, removes_outputs=False, sections={"data": DataParams}))
