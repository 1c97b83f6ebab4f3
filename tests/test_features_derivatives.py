"""The derivatives features (funding, basis, open interest): definitions, the point-in-time rule of
their inputs (mlrisk.data.point_in_time) and leakage: perturbing any input after time t leaves
every feature row <= t unchanged."""

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config.data import DataParams
from mlrisk.config.features import FeatureParams, LabelParams
from mlrisk.config.split import SplitParams
from mlrisk.data.point_in_time import METRICS_LAG_MS, close_ms, join_inputs, model_candles, with_inputs
from mlrisk.data.preprocess import build_dataset
from mlrisk.errors import DataError
from mlrisk.features import DERIVATIVES, FEATURES, compute_features

HOUR = 3_600_000
DERIV = list(DERIVATIVES)
NAMES = DERIV + ["close_pct"]
LAG = METRICS_LAG_MS
HALT = pd.Timestamp("2023-03-24 13:00", tz="UTC")  # Binance spot halted: the spot sample has no candle at this open time


def _ms(t):
    return pd.DatetimeIndex(t).as_unit("ms").asi8


def inputs(n: int = 400, seed: int = 0) -> dict:
    """Synthetic perp candles (1h) with spot and mark candles, a funding history every 8 h (some
    settlements jittered by 1..29 ms, some exactly on the hour) and metrics rows every 5 minutes."""
    rng = np.random.default_rng(seed)
    perp = synthetic_candles(n, seed=seed, price=30_000.0)
    spot = perp.copy()
    spot[["open", "high", "low", "close"]] = perp[["open", "high", "low", "close"]].to_numpy() * (1 + rng.normal(0, 4e-4, (n, 1)))
    mark = perp[["open_time", "open", "high", "low", "close"]].copy()
    mark[["open", "high", "low", "close"]] = mark[["open", "high", "low", "close"]].to_numpy() * (1 + rng.normal(0, 2e-4, (n, 1)))
    t0 = int(_ms(perp["open_time"])[0])
    slots = np.arange(t0 - 16 * HOUR, t0 + (n + 8) * HOUR, 8 * HOUR)
    jitter = np.where(np.arange(len(slots)) % 2 == 0, 0, rng.integers(1, 30, len(slots)))
    raw = slots + jitter
    funding = pd.DataFrame({"funding_time": pd.to_datetime(slots, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                            "funding_time_raw": pd.to_datetime(raw, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                            "funding_rate": rng.normal(1e-4, 2e-4, len(slots)), "interval_hours": 8, "mark_price": np.nan})
    mt = np.arange(t0 - HOUR, t0 + (n + 1) * HOUR, 300_000)
    metrics = pd.DataFrame({"create_time": pd.to_datetime(mt, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                            "sum_open_interest": rng.uniform(7e4, 8e4, len(mt)),
                            "sum_open_interest_value": rng.uniform(2e9, 3e9, len(mt))})
    return {"perp": perp, "spot": spot, "mark": mark, "funding": funding, "metrics": metrics}


def feats(d: dict) -> pd.DataFrame:
    c = join_inputs(d["perp"], HOUR, funding=d["funding"], mark=d["mark"], spot=d["spot"], metrics=d["metrics"],
                    perp=d["perp"])
    return compute_features(c, NAMES)


def perturb_after(d: dict, t: int, seed: int = 7) -> dict:
    """Every input value not published by the close of candle ``t`` replaced by a different one:
    funding settlements stamped (raw, with jitter) after the close, spot and mark candles opening
    after candle t, metrics rows whose create_time + lag is after the close, perp candles after t."""
    rng = np.random.default_rng(seed)
    at = int(_ms(d["perp"]["open_time"])[t]) + HOUR - 1  # the candle's close_time, 07:59:59.999 for 07:00
    out = {k: v.copy() for k, v in d.items()}
    f = out["funding"]
    late = _ms(f["funding_time_raw"]) > at
    f.loc[late, "funding_rate"] = rng.normal(-3e-3, 1e-3, int(late.sum()))
    for k in ("spot", "mark", "perp"):
        x = out[k]
        after = _ms(x["open_time"]) > at
        x.loc[after, ["open", "high", "low", "close"]] = x.loc[after, ["open", "high", "low", "close"]].to_numpy() * 1.07
    m = out["metrics"]
    unknown = _ms(m["create_time"]) + LAG > at
    m.loc[unknown, "sum_open_interest_value"] = rng.uniform(5e9, 6e9, int(unknown.sum()))
    return out


def test_every_derivatives_feature_is_covered_here():
    assert set(DERIV) == {"funding_rate", "funding_change", "basis_spot", "basis_mark", "log_open_interest_change"}
    assert not set(DERIV) & set(FEATURES)


@pytest.mark.parametrize("t", [7, 8, 15, 16, 100, 231, 350])  # 7/15: the candle before a settlement; 8/16: the one at it
def test_derivatives_features_are_causal_under_future_perturbation(t):
    d = inputs()
    a, b = feats(d), feats(perturb_after(d, t))
    for name in DERIV:
        assert np.array_equal(a[name].iloc[: t + 1].to_numpy(), b[name].iloc[: t + 1].to_numpy(), equal_nan=True), name
        assert not np.array_equal(a[name].iloc[t + 1:].to_numpy(), b[name].iloc[t + 1:].to_numpy(), equal_nan=True), name


@pytest.mark.parametrize("t", [7, 8, 100, 351])
def test_derivatives_features_are_causal_when_the_future_is_dropped(t):
    d = inputs()
    a = feats(d)
    at = int(close_ms(d["perp"]["open_time"].iloc[[t]], HOUR)[0])
    cut = {"perp": d["perp"].iloc[: t + 1], "spot": d["spot"].iloc[: t + 1], "mark": d["mark"].iloc[: t + 1],
           "funding": d["funding"][_ms(d["funding"]["funding_time_raw"]) <= at],
           "metrics": d["metrics"][_ms(d["metrics"]["create_time"]) + LAG <= at]}
    b = feats(cut)
    assert np.array_equal(a.iloc[: t + 1].to_numpy(), b.to_numpy(), equal_nan=True)


def _settlement_at(ms: int, rate: float) -> pd.DataFrame:
    before = ms - 8 * HOUR
    return pd.DataFrame({"funding_time_raw": pd.to_datetime([before, ms], unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                         "funding_time": pd.to_datetime([before // HOUR * HOUR, ms // HOUR * HOUR], unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                         "funding_rate": [0.0001, rate], "interval_hours": 8, "mark_price": np.nan})


@pytest.mark.parametrize("jitter_ms", [0, 23])
def test_a_settlement_is_known_from_the_close_of_the_candle_holding_its_stamp(jitter_ms):
    c = synthetic_candles(12, start="2024-01-01")  # 00:00 .. 11:00
    eight = int(_ms(pd.DatetimeIndex(["2024-01-01T08:00"], tz="UTC"))[0])
    j = join_inputs(c, HOUR, funding=_settlement_at(eight + jitter_ms, -0.002))
    f = compute_features(j, ["funding_rate", "funding_change"])
    # the 07:00 candle closes at 07:59:59.999: the 08:00:00.0xx settlement is not known there
    assert f["funding_rate"].iloc[7] == 0.0001 and np.isnan(f["funding_change"].iloc[7])
    assert f["funding_rate"].iloc[8] == -0.002 and f["funding_change"].iloc[8] == pytest.approx(-0.0021)
    assert f["funding_rate"].iloc[11] == -0.002
    # settlements before the first known one: NaN, not 0
    assert np.isnan(compute_features(join_inputs(c, HOUR, funding=_settlement_at(eight + 9 * HOUR, 0.0)), ["funding_rate"])["funding_rate"].iloc[0])


def test_a_metrics_row_waits_for_its_publication_lag():
    c = synthetic_candles(4, start="2024-01-01")  # 00:00 .. 03:00
    t = pd.to_datetime(["2024-01-01T00:50", "2024-01-01T00:55", "2024-01-01T01:55"], utc=True).astype("datetime64[ms, UTC]")
    m = pd.DataFrame({"create_time": t, "sum_open_interest_value": [100.0, 110.0, 121.0]})
    v = join_inputs(c, HOUR, metrics=m)["pit_oi_value"].to_numpy()
    # 00:55 + 5 min = 01:00:00 > 00:59:59.999: the 00:00 candle sees the 00:50 row only
    np.testing.assert_array_equal(v, [100.0, 110.0, 121.0, 121.0])
    f = compute_features(join_inputs(c, HOUR, metrics=m), ["log_open_interest_change"])["log_open_interest_change"]
    assert np.isnan(f.iloc[0]) and f.iloc[1] == pytest.approx(np.log(1.1)) and f.iloc[3] == 0.0
    w = join_inputs(c, HOUR, metrics=m, metrics_lag_ms=24 * HOUR)["pit_oi_value"]
    assert w.isna().all()  # a day's lag: none known yet


def test_definitions_and_same_open_time_matching():
    d = inputs(50)
    f = feats(d)
    i = 20
    assert f["basis_spot"].iloc[i] == pytest.approx(d["perp"]["close"].iloc[i] / d["spot"]["close"].iloc[i] - 1, abs=0, rel=1e-12)
    assert f["basis_mark"].iloc[i] == pytest.approx(d["perp"]["close"].iloc[i] / d["mark"]["close"].iloc[i] - 1, abs=0, rel=1e-12)
    # a missing spot candle gives NaN at its open time, never a neighbour's value
    j = join_inputs(d["perp"], HOUR, spot=d["spot"].drop(index=i), perp=d["perp"])
    g = compute_features(j, ["basis_spot"])["basis_spot"]
    assert np.isnan(g.iloc[i]) and g.drop(index=i).notna().all()


@pytest.mark.parametrize("name,what", [("funding_rate", "funding history"), ("funding_change", "funding history"),
                                       ("basis_spot", "perpetual's candles"), ("basis_mark", "perpetual's candles"),
                                       ("log_open_interest_change", "open interest")])
def test_a_missing_input_is_one_clear_line(name, what):
    with pytest.raises(KeyError, match=f"{name} needs .*{what}"):
        compute_features(synthetic_candles(20), [name])
    with pytest.raises(DataError, match="set data.market: futures"):
        with_inputs(synthetic_candles(20), [name], HOUR, kind="spot", market="spot", load={})


def test_build_dataset_starts_where_the_inputs_begin():
    d = inputs(600)
    c = join_inputs(d["perp"], HOUR, funding=d["funding"].iloc[4:], mark=d["mark"], spot=d["spot"].iloc[:-7], perp=d["perp"])
    fp = FeatureParams(names=["close_pct", "funding_change", "basis_spot"], seq_len=8, label=LabelParams(horizon=1))
    ds, spec = build_dataset(c, fp, SplitParams(), "1h")
    first_two = d["funding"]["funding_time_raw"].iloc[5]  # funding_change needs two settlements known
    assert ds["open_time"].iloc[0] == first_two.floor("h") and spec.warmup == 1
    assert ds["open_time"].iloc[-1] == d["spot"]["open_time"].iloc[-8]  # the spot candles end 7 candles early
    assert not np.isnan(ds["label"].iloc[-1])  # its label reads the perp candles after it, as any label does
    assert ds[["funding_change", "basis_spot"]].notna().all(axis=None)
    gap = c.copy()
    gap.loc[300, "pit_spot_close"] = np.nan  # a missing input between them (a spot halt) is a gap for the windows
    g, gspec = build_dataset(gap, fp, SplitParams(), "1h")
    i = int(np.flatnonzero(g["open_time"] == c["open_time"].iloc[300])[0])
    span = fp.seq_len + spec.warmup  # the windows (with their lookback) that hold row i
    assert np.isnan(g["basis_spot"].iloc[i]) and g["basis_spot"].drop(index=i).notna().all()
    assert not g["window_ok"].iloc[i : i + span].any() and g["window_ok"].iloc[i + span]
    assert (g["window_ok"] == ds["window_ok"]).drop(index=range(i, i + span)).all()
    assert gspec.split["gaps"]["windows_dropped"] == ds["window_ok"].iloc[i : i + span].sum()
    assert (gspec.mean, gspec.scale) != (None, None) and np.isfinite(gspec.mean + gspec.scale).all()
    np.testing.assert_array_equal(g["label"], ds["label"])  # the labels read the traded candles only
    gap.loc[300, "close"] = 0.0  # a non-derivatives feature undefined inside the data stays an error
    with pytest.raises(DataError, match=r"features \['close_pct'\] are undefined after the warmup"):
        build_dataset(gap, fp, SplitParams(), "1h")


def _raw_dir(tmp_path, d):
    from mlrisk.data.derivatives import funding_path, mark_path, spot_path
    from mlrisk.io import write_parquet

    write_parquet(tmp_path / "BTCUSDT-1h.parquet", d["perp"])
    write_parquet(spot_path(tmp_path, "BTCUSDT", "1h"), d["spot"])
    write_parquet(mark_path(tmp_path, "BTCUSDT", "1h"), d["mark"].assign(close_time=d["perp"]["close_time"]))
    write_parquet(funding_path(tmp_path, "BTCUSDT"), d["funding"])
    return tmp_path


def test_model_candles_traded_or_spot(tmp_path):
    d = inputs(120)
    raw = _raw_dir(tmp_path, d)
    fut = DataParams(market="futures")
    fp = FeatureParams(names=["close_pct", "basis_spot", "basis_mark", "funding_rate"])
    traded = model_candles(raw, fut, fp)
    np.testing.assert_array_equal(traded["close"], d["perp"]["close"])
    spot = model_candles(raw, fut, fp.model_copy(update={"candles": "spot"}))
    np.testing.assert_array_equal(spot["close"], d["spot"]["close"])
    # the basis is perp over spot whichever candles the model learns on
    a, b = compute_features(traded, fp.names), compute_features(spot, fp.names)
    np.testing.assert_allclose(a["basis_spot"], b["basis_spot"], rtol=1e-12)
    assert not np.allclose(a["close_pct"].iloc[1:], b["close_pct"].iloc[1:])
    with pytest.raises(DataError, match="features.candles: spot is for a futures run"):
        model_candles(raw, DataParams(market="spot"), fp.model_copy(update={"candles": "spot", "names": ["close_pct"]}))
    with pytest.raises(DataError, match="metrics.parquet not found"):
        model_candles(raw, fut, FeatureParams(names=["log_open_interest_change"]))
    (raw / "BTCUSDT-1h-mark.parquet").unlink()
    with pytest.raises(DataError, match="mark.parquet not found: basis_mark needs the mark-price candles"):
        model_candles(raw, fut, FeatureParams(names=["basis_mark"]))


def test_the_shipped_sample_gives_finite_features():
    from mlrisk.data.derivatives import load_futures_sample
    from mlrisk.data.sources import load_sample

    perp, mark, funding = load_futures_sample("BTCUSDT", "1h")
    spot = load_sample("BTCUSDT", "1h")
    j = join_inputs(perp, HOUR, funding=funding, mark=mark, spot=spot, perp=perp)
    f = compute_features(j, ["funding_rate", "funding_change", "basis_spot", "basis_mark"]).iloc[8:]
    assert f["funding_rate"].notna().all() and f["funding_change"].notna().all() and f["basis_mark"].notna().all()
    # basis_spot: the spot sample starts 7 h after and ends 18 h before the perp, and keeps the spot halt's gap
    t = j["open_time"].iloc[8:]
    spot_edges = (t < pd.Timestamp("2022-09-23 07:00", tz="UTC")) | (t > pd.Timestamp("2024-09-22 05:00", tz="UTC"))
    assert f["basis_spot"].isna().to_numpy().nonzero()[0].tolist() == (spot_edges | (t == HALT)).to_numpy().nonzero()[0].tolist()
    assert -10e-4 < f["basis_spot"].median() < 0  # the perp sits a few bps under spot (-3.8 bps median)
    assert f["funding_rate"].mean() == pytest.approx(funding["funding_rate"].mean(), rel=0.05)


def test_preprocess_stage_with_derivatives_features_on_the_futures_sample(tmp_path):
    """fetch (the whole futures sample, spot companion included) then preprocess with every derivatives
    feature the sample supports: the spot halt (2023-03-24 13:00, a gap the spot data keeps) drops the
    windows holding that candle instead of failing."""
    import json

    import yaml

    from conftest import ROOT, run_stage
    from mlrisk.data.derivatives import spot_path
    from mlrisk.data.sources import load_sample
    from mlrisk.io import write_parquet

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update(source="sample", market="futures", start=None)
    p["features"].update(names=["close_pct", "funding_rate", "funding_change", "basis_spot", "basis_mark"], seq_len=16)
    p["evaluate"].update(mode="split", holdout=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (pd.read_parquet(spot_path(tmp_path / "data/raw", "BTCUSDT", "1h"))["open_time"] == HALT).any()
    r = run_stage("preprocess", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "models/preprocess.json").read_text())
    assert spec["features"] == p["features"]["names"]
    assert spec["split"]["gaps"] == {"windows_dropped": 16 + spec["warmup"], "labels_dropped": 0}
    ds = pd.concat([pd.read_parquet(tmp_path / f"data/processed/{q}.parquet") for q in ("train", "val", "test")])
    names = p["features"]["names"]
    at_halt = (ds["open_time"] == HALT).to_numpy()
    assert at_halt.sum() == 1 and ds.loc[at_halt, "basis_spot"].isna().all()
    assert ds.loc[~at_halt, names].notna().all(axis=None)
    i = int(np.flatnonzero(at_halt)[0])  # no window (of 16 rows, plus the lookback) holds the halt's row
    assert not ds["window_ok"].iloc[i : i + 16 + spec["warmup"]].any() and ds["window_ok"].iloc[i + 16 + spec["warmup"]]
    p["features"]["names"] = ["close_pct", "log_open_interest_change"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = run_stage("preprocess", cwd=tmp_path)
    assert r.returncode != 0 and "metrics.parquet not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_derivatives_features_are_names_params_accept_for_the_traded_symbol_only():
    from pydantic import ValidationError

    assert FeatureParams(names=DERIV).names == DERIV
    with pytest.raises(ValidationError, match="unknown feature 'ETHUSDT:funding_rate'"):
        FeatureParams(names=["ETHUSDT:funding_rate"])


@pytest.mark.parametrize("t", [420, 515])
def test_the_dataset_and_scaler_before_t_ignore_derivatives_inputs_after_t(t):
    d = inputs(600)
    fp = FeatureParams(names=NAMES, seq_len=8, label=LabelParams(horizon=1), clip=0.01)

    def ds(x):
        c = join_inputs(x["perp"], HOUR, funding=x["funding"], mark=x["mark"], spot=x["spot"], metrics=x["metrics"],
                        perp=x["perp"])
        return build_dataset(c, fp, SplitParams(train=0.6, val=0.1), "1h")

    (a, sa), (b, sb) = ds(d), ds(perturb_after(d, t))
    assert (sa.mean, sa.scale, sa.clip_low, sa.clip_high) == (sb.mean, sb.scale, sb.clip_low, sb.clip_high)
    keep = a["open_time"] <= d["perp"]["open_time"].iloc[t]
    assert (a["part"][keep] != "test").any() and (a["part"][~keep] == "test").all()
    assert np.array_equal(a.loc[keep, NAMES].to_numpy(), b.loc[keep, NAMES].to_numpy(), equal_nan=True)
    assert not np.array_equal(a.loc[~keep, NAMES].to_numpy(), b.loc[~keep, NAMES].to_numpy(), equal_nan=True)


def test_one_reader_of_the_raw_tables_and_each_caller_says_what_missing_means(tmp_path, monkeypatch):
    """raw_tables reads data/raw (None: not written); raw_loaders (the features) makes a missing table a
    one-line error; the backtest stage and a replay read the funding and mark tables through it too and
    fall back on None."""
    import importlib.util

    import mlrisk.data.derivatives as dv
    from conftest import ROOT
    from mlrisk.data.point_in_time import raw_loaders
    from mlrisk.live.app import replay_inputs

    d = inputs(120)
    raw = _raw_dir(tmp_path, d)
    t = dv.raw_tables(raw, "BTCUSDT", "1h")
    assert t["metrics"]() is None and len(t["funding"]()) == len(d["funding"]) and len(t["mark"]()) == 120
    assert len(t["perp"]()) == len(t["spot"]()) == 120
    with pytest.raises(DataError, match="metrics.parquet not found: log_open_interest_change needs the metrics dumps"):
        raw_loaders(raw, "BTCUSDT", "1h")["metrics"]()
    assert raw_loaders(raw, "BTCUSDT", "1h")["funding"]().equals(t["funding"]())
    read = []

    def spy(*a):
        read.append(a)
        return {k: (lambda: None) for k in ("perp", "spot", "funding", "mark", "metrics")}

    monkeypatch.setattr(dv, "raw_tables", spy)
    with pytest.raises(DataError, match="mark.parquet not found"):
        raw_loaders(raw, "BTCUSDT", "1h")["mark"]()  # the files are there: only the reader says None
    replay_inputs(raw / "BTCUSDT-1h.parquet", "BTCUSDT", "1h", HOUR, d["perp"])
    spec = importlib.util.spec_from_file_location("backtest_stage", ROOT / "stages" / "backtest.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    cols = stage.with_market_columns(d["perp"][["open_time"]], DataParams(market="futures"), str(raw))
    assert cols.drop(columns="open_time").isna().all(axis=None)  # no table read: the engine's fallbacks
    assert [a[0] for a in read] == [raw, raw, str(raw)] and all(a[1:] == ("BTCUSDT", "1h") for a in read)


def test_one_same_open_time_join_and_a_duplicate_open_time_is_bad_data():
    """join_inputs (the features' mark, spot, perp closes) and market_columns (the engine's mark candles)
    join by open time with one helper: the same rows, and a duplicate open time raises in both."""
    from mlrisk.backtest.futures import market_columns
    from mlrisk.data.point_in_time import same_open

    d = inputs(50)
    mark = d["mark"].iloc[5:45]  # the candles before and after it have no mark candle: NaN
    j = join_inputs(d["perp"], HOUR, mark=mark)
    m = market_columns(d["perp"]["open_time"], None, mark, HOUR)
    want = same_open(d["perp"]["open_time"], mark, ["open", "high", "low", "close"], "mark")
    np.testing.assert_array_equal(j["pit_mark_close"].to_numpy(), want["close"].to_numpy())
    np.testing.assert_array_equal(m[["mark_open", "mark_high", "mark_low"]].to_numpy(), want[["open", "high", "low"]].to_numpy())
    assert want["close"].isna().sum() == 10 and want["close"].iloc[5:45].notna().all()
    dup = pd.concat([mark, mark.iloc[[7]]])
    with pytest.raises(DataError, match=r"the mark candles have 1 duplicate open time\(s\) \(first "):
        join_inputs(d["perp"], HOUR, mark=dup)
    with pytest.raises(DataError, match=r"the mark candles have 1 duplicate open time\(s\)"):
        market_columns(d["perp"]["open_time"], None, dup, HOUR)
    with pytest.raises(DataError, match="the spot candles have 1 duplicate"):
        join_inputs(d["perp"], HOUR, spot=pd.concat([d["spot"], d["spot"].iloc[[3]]]))
