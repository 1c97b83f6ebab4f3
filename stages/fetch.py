"""DVC stage `fetch`: candles -> data/raw/{SYMBOL}-{INTERVAL}.parquet + reports/data_quality.json.

With ``data.market: futures`` the candles are the perpetual's, and the funding history and mark-price
klines go beside them (data/raw/{SYMBOL}-funding.parquet, data/raw/{SYMBOL}-{INTERVAL}-mark.parquet;
schema and loaders in mlrisk.data.derivatives), counted under ``funding`` and ``mark`` in the report,
and so do the spot candles of the same symbol, interval and window (data/raw/{SYMBOL}-{INTERVAL}-spot.parquet,
the kline schema, gaps kept; counted under ``spot`` with the median perp-over-spot basis): the shipped
spot sample, Binance's spot klines, or the spot kline dumps in a ``spot/`` folder of data.files (none
listed: no spot candles, said in the log).

Files for ``data.source: file`` must lie in data/files/, the folder this stage depends on, so that
a replaced download re-runs it. The candle file records what made it (source, symbol, interval,
market) in its parquet metadata; the binance source extends only a file it made itself."""

import os
import sys
from pathlib import Path

from mlrisk.config.data import DataParams
from mlrisk.stage import run_stage
from mlrisk.data.derivatives import funding_path, mark_path, metrics_path, spot_path
from mlrisk.data.sources import (METADATA_KEY, get_candles, get_derivatives, get_metrics, get_spot, provenance,
                                  read_existing)
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
    f_out, m_out = funding_path(args.out_dir, d.symbol), mark_path(args.out_dir, d.symbol, d.interval)
    x_out, s_out = metrics_path(args.out_dir, d.symbol), spot_path(args.out_dir, d.symbol, d.interval)
    tables, made_by = {}, {}
    if d.market == "futures":
        binance = d.source == "binance"
        funding, mark, dq = get_derivatives(d, candles, read_existing(f_out, d) if binance else None,
                                            read_existing(m_out, d) if binance else None)
        metrics, xq = get_metrics(d)
        sd = d.model_copy(update={"market": "spot", "others": []})  # the spot file's provenance (incremental updates)
        spot, sq = get_spot(d, candles, read_existing(s_out, sd) if binance else None)
        tables, made_by = {f_out: funding, m_out: mark, x_out: metrics, s_out: spot}, {s_out: sd}
        quality.update({"market": "futures", **dq, "spot": sq})
        if xq is not None:
            quality["metrics"] = xq
        if spot is None:
            why = (f"Binance has no spot market {d.symbol}" if binance
                   else "no spot kline dumps in a spot/ folder of data.files")
            print(f"fetch: no spot candles ({why}): features on spot candles and the basis need them")
        for name, q in dq.items():
            if q is None:
                print(f"fetch: no {name} data in data.files (list its Binance dumps there): the backtest falls back to "
                      f"{'backtest.funding_rate' if name == 'funding' else 'the last price'}")
    write_parquet(out, candles, metadata={METADATA_KEY: provenance(d)})
    for path, table in tables.items():
        if table is not None:
            write_parquet(path, table, metadata={METADATA_KEY: provenance(made_by.get(path, d))})
    for path in (f_out, m_out, x_out, s_out):  # an earlier futures run's table must not outlive a run that has none
        if tables.get(path) is None and path.exists():
            path.unlink()
    write_json(args.quality, quality)
    print(f"fetch: {quality['rows']} candles {quality['first_candle']} .. {quality['last_candle']}, "
          f"{quality['gaps']} gap(s), {quality['filled_candles']} filled ({quality['filled_share']:.2%}) -> {out}")
    if quality.get("funding"):
        fq = quality["funding"]
        print(f"fetch: {fq['rows']} funding settlements every {fq['interval_hours']} h, {fq['missing_settlements']} missing, "
              f"{fq['off_schedule']} off schedule -> {f_out}")
    if quality.get("mark"):
        mq = quality["mark"]
        print(f"fetch: {mq['rows']} mark-price candles, {mq['missing_candles']} missing, "
              f"{mq['candles_without_mark']} candle(s) without one -> {m_out}")
    if quality.get("spot"):
        sq = quality["spot"]
        print(f"fetch: {sq['rows']} spot candles, {sq['gaps']} gap(s) ({sq['missing_candles']} missing); median basis perp "
              f"over spot {sq['median_basis_bps']} bps over {sq['basis_candles']} candles -> {s_out}")
    if quality.get("metrics"):
        xq = quality["metrics"]
        print(f"fetch: {xq['rows']} metrics rows (open interest, long/short ratios), {xq['missing_rows']} missing -> {x_out}")


def add_args(p):
    p.add_argument("--out-dir", default="data/raw", help="output folder (default: data/raw)")
    p.add_argument("--quality", default="reports/data_quality.json", help="data-quality metrics file")
    p.add_argument("--files-dir", default="data/files", help="folder that must hold data.files (default: data/files)")


if __name__ == "__main__":
    sys.exit(run_stage("fetch", __doc__, body, add_args, removes_outputs=False, sections={"data": DataParams}))
