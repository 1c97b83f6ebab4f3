"""Leakage tests: perturbing the future never changes the past."""

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config.features import FeatureParams, LabelParams
from mlrisk.config.split import SplitParams
from mlrisk.errors import DataError
from mlrisk.features import FAMILIES, FEATURES, compute_features, warmup
from mlrisk.data.labels import DOWN, FLAT, UP, barrier_labels, direction_labels
from mlrisk.data.preprocess import PreprocessSpec, build_dataset, part_frame, window_arrays
from mlrisk.data.split import PARTS

ALL = list(FEATURES) + [f"{fam}_{n}" for fam in FAMILIES for n in (3, 24)]


def perturb_after(c: pd.DataFrame, t: int, seed: int = 99) -> pd.DataFrame:
    """Replace every candle after row t by a different random walk (same times)."""
    other = synthetic_candles(len(c), seed=seed, price=float(c["close"].iloc[t]) * 1.3)
    out = c.copy()
    cols = [col for col in c.columns if col not in ("open_time", "close_time")]
    out.loc[t + 1:, cols] = other.loc[t + 1:, cols].to_numpy()
    return out


@pytest.mark.parametrize("t", [30, 200, 555])
def test_features_are_causal_under_future_perturbation(t):
    c = synthetic_candles(600)
    a = compute_features(c, ALL)
    b = compute_features(perturb_after(c, t), ALL)
    assert np.array_equal(a.iloc[: t + 1].to_numpy(), b.iloc[: t + 1].to_numpy(), equal_nan=True)
    assert not np.array_equal(a.iloc[t + 1:].to_numpy(), b.iloc[t + 1:].to_numpy(), equal_nan=True)


def test_features_are_causal_when_the_future_is_dropped():
    c = synthetic_candles(600)
    a = compute_features(c, ALL)
    for t in (50, 333):
        b = compute_features(c.iloc[: t + 1], ALL)
        assert np.array_equal(a.iloc[: t + 1].to_numpy(), b.to_numpy(), equal_nan=True)


def test_original_features_match_their_definitions():
    c = synthetic_candles(10)
    f = compute_features(c, ["upper_wick", "lower_wick", "close_pct", "volume_pct"])
    i = 5
    assert f["upper_wick"][i] == c["high"][i] / c["close"][i]
    assert f["lower_wick"][i] == c["close"][i] / c["low"][i]
    assert f["close_pct"][i] == pytest.approx(c["close"][i] / c["close"][i - 1] - 1)
    assert f["volume_pct"][i] == pytest.approx((c["volume"][i] + 1) / (c["volume"][i - 1] + 1) - 1)
    assert warmup(["upper_wick", "log_return_24"]) == 24


def test_direction_labels_with_dead_zone():
    close = np.array([100, 101, 100.5, 100.5, 99, 99.05])
    y = direction_labels(close, 1)
    np.testing.assert_array_equal(y, [UP, DOWN, np.nan, DOWN, UP, np.nan])
    y = direction_labels(close, 1, dead_zone=0.002, flat_class=True)
    np.testing.assert_array_equal(y, [UP, DOWN, FLAT, DOWN, FLAT, np.nan])
    y2 = direction_labels(close, 2)
    np.testing.assert_array_equal(y2, [UP, DOWN, DOWN, DOWN, np.nan, np.nan])


def test_barrier_labels_by_hand():
    close = np.array([100.0, 100, 100, 100, 100, 100])
    high = np.array([100.0, 100.5, 101.2, 100, 102, 100])
    low = np.array([100.0, 99.5, 99.6, 98.9, 98, 100])
    y = barrier_labels(close, high, low, horizon=3, target=0.01)
    # t=0: candle 2 hits up (101.2 >= 101) before any low <= 99 -> UP
    # t=1: candle 2 up hit -> UP; t=2: candle 3 low 98.9 <= 99 -> DOWN
    # t=3: candle 4 hits both -> no label; t=4: candle 5 nothing, no more candles -> none
    np.testing.assert_array_equal(y, [UP, UP, DOWN, np.nan, np.nan, np.nan])


def _fp(**kw) -> FeatureParams:
    return FeatureParams(names=["upper_wick", "lower_wick", "close_pct", "volume_pct", "log_return_5"], seq_len=16, **kw)


def test_dataset_before_t_is_bit_identical_when_the_future_changes():
    c = synthetic_candles(1200)
    fp, sp = _fp(label=LabelParams(horizon=3)), SplitParams(train=0.6, val=0.2)
    a, sa = build_dataset(c, fp, sp, "1h")
    t = int(np.nonzero((a["part"] == "test").to_numpy())[0][0]) + 20 + sa.warmup  # a candle inside the test part
    b, sb = build_dataset(perturb_after(c, t), fp, sp, "1h")
    assert sa.mean == sb.mean and sa.scale == sb.scale  # scaler fitted on train only
    row_t = t - sa.warmup
    cols = fp.names
    assert np.array_equal(a[cols].to_numpy()[: row_t + 1], b[cols].to_numpy()[: row_t + 1])
    # labels look forward: only those within `horizon` of t may change
    la, lb = a["label"].to_numpy(), b["label"].to_numpy()
    assert np.array_equal(la[: row_t + 1 - 3], lb[: row_t + 1 - 3], equal_nan=True)


def test_scaler_changes_if_train_data_changes():
    """Guard against a vacuous scaler test: the scaler does depend on the train rows."""
    c = synthetic_candles(1200)
    fp, sp = _fp(), SplitParams(train=0.6, val=0.2)
    _, sa = build_dataset(c, fp, sp, "1h")
    _, sb = build_dataset(perturb_after(c, 100), fp, sp, "1h")
    assert sa.mean != sb.mean


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_scaler_and_clipping_are_fitted_on_the_train_part_only(clip):
    c = synthetic_candles(1200)
    fp, sp = _fp(clip=clip), SplitParams(train=0.6, val=0.2)
    ds, spec = build_dataset(c, fp, sp, "1h")
    raw = compute_features(c, fp.names).iloc[spec.warmup:].reset_index(drop=True)
    train = (ds["part"] == "train").to_numpy()
    tr = raw[train]
    if clip:
        lo, hi = tr.quantile(clip).to_numpy(), tr.quantile(1 - clip).to_numpy()
        np.testing.assert_allclose(spec.clip_low, lo, rtol=1e-12)
        np.testing.assert_allclose(spec.clip_high, hi, rtol=1e-12)
        tr = tr.clip(lo, hi, axis=1)
    else:
        assert spec.clip_low is None
    np.testing.assert_allclose(spec.mean, tr.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(spec.scale, tr.std(ddof=0).to_numpy(), rtol=1e-12)
    assert not np.allclose(spec.mean, raw.mean().to_numpy(), rtol=1e-6)


def test_clipping_keeps_one_outlier_from_killing_a_feature():
    """A zero-volume candle (a trading halt) in the training part made volume_pct's scale huge, so
    every other value scaled to about 0. Clipped at the train quantiles, the feature stays alive."""
    c = synthetic_candles(1200)
    c["volume"] *= 100  # BTCUSDT 1h trades ~1,000-5,000 BTC a candle
    c.loc[100, "volume"] = 0.0  # then (v + 1) / 1 - 1: an outlier of ~5,000 in volume_pct
    fp = FeatureParams(names=["volume_pct"], seq_len=16)
    sp = SplitParams(train=0.6, val=0.2)
    spread = {}
    for clip in (0.0, 0.01):
        ds, _ = build_dataset(c, fp.model_copy(update={"clip": clip}), sp, "1h")
        spread[clip] = ds.loc[ds["part"] == "test", "volume_pct"].std()
    assert spread[0.0] < 0.2 and spread[0.01] > 0.5, spread


def test_no_label_is_a_feature():
    c = synthetic_candles(800)
    fp = _fp(label=LabelParams(horizon=1))
    ds, spec = build_dataset(c, fp, SplitParams(), "1h")
    assert "label" not in spec.features
    y = ds["label"].to_numpy()
    ok = ~np.isnan(y)
    future_ret = np.r_[ds["close"].to_numpy()[1:] / ds["close"].to_numpy()[:-1] - 1, np.nan]
    for f in spec.features:
        x = ds[f].to_numpy()
        assert abs(np.corrcoef(x[ok], y[ok])[0, 1]) < 0.2, f
        both = ok & ~np.isnan(future_ret)
        assert abs(np.corrcoef(x[both], future_ret[both])[0, 1]) < 0.2, f


def test_windows_and_labels_never_cross_part_boundaries():
    c = synthetic_candles(1500)
    h, L = 4, 16
    fp = _fp(label=LabelParams(horizon=h))
    ds, spec = build_dataset(c, fp, SplitParams(train=0.6, val=0.2), "1h")
    rows = {}
    for part in PARTS:
        offset = int(np.nonzero((ds["part"] == part).to_numpy())[0][0])
        _, ends, _ = window_arrays(part_frame(ds, part), spec.features, only_used=False)
        ends = ends + offset
        window_rows = set((ends[:, None] - np.arange(L)).ravel().tolist())
        label_rows = set((ends[:, None] + np.arange(h + 1)).ravel().tolist())
        assert (ds["part"].to_numpy()[sorted(window_rows)] == part).all()
        rows[part] = (window_rows, label_rows)
    for a, b in (("train", "val"), ("val", "test"), ("train", "test")):
        assert not rows[a][0] & rows[b][0]
        assert not rows[a][1] & rows[b][0]  # a label of part a never looks into part b's windows
        assert max(rows[a][1]) < min(rows[b][0])
    assert spec.split["purge"] == h + L


def test_date_split():
    c = synthetic_candles(2000)
    ds, spec = build_dataset(c, _fp(), SplitParams(method="date", val_start="2024-02-01", test_start="2024-02-20"), "1h")
    first_val = ds.loc[ds["part"] == "val", "open_time"].iloc[0]
    first_test = ds.loc[ds["part"] == "test", "open_time"].iloc[0]
    assert first_val == pd.Timestamp("2024-02-01", tz="UTC") and first_test == pd.Timestamp("2024-02-20", tz="UTC")
    assert ds.loc[ds["part"] == "train", "open_time"].iloc[-1] < first_val - pd.Timedelta(hours=spec.split["purge"] - 1)


def test_too_little_data_is_a_clear_error():
    with pytest.raises(DataError, match="part has"):
        build_dataset(synthetic_candles(120), _fp(), SplitParams(), "1h")


def test_undersampling_touches_the_train_part_only():
    c = synthetic_candles(1500)
    fp = _fp(label=LabelParams(kind="barrier", horizon=10, target=0.01), balance="undersample")
    ds, spec = build_dataset(c, fp, SplitParams(train=0.6, val=0.2), "1h")
    plain, _ = build_dataset(c, _fp(label=LabelParams(kind="barrier", horizon=10, target=0.01)), SplitParams(train=0.6, val=0.2), "1h")
    tr = ds[(ds["part"] == "train") & ds["use"]]
    counts = tr["label"].value_counts()
    assert counts.nunique() == 1  # balanced
    for part in ("val", "test"):
        assert ds.loc[ds["part"] == part, "use"].equals(plain.loc[plain["part"] == part, "use"])
    # unlabelled rows stay in the table, marked
    assert ds["label"].isna().any() and not ds.loc[ds["label"].isna(), "use"].any()


def test_training_windows_are_gathered_per_batch_and_end_at_their_row():
    """The model's windows come from one (rows, features) tensor, gathered batch by batch: the
    window ending at row e is rows e - seq_len + 1 .. e, never a later row."""
    from mlrisk.model.inference import make_dataset

    x = np.arange(40, dtype="float32").reshape(20, 2)
    ends = np.array([4, 19, 9])
    y = np.array([1.0, 0.0, 1.0], dtype="float32")
    batches = list(make_dataset(x, ends, y, seq_len=5, batch_size=2).as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [2, 1]
    windows = np.concatenate([b[0] for b in batches])
    assert windows.shape == (3, 5, 2)
    for w, e in zip(windows, ends):
        np.testing.assert_array_equal(w, x[e - 4:e + 1])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_spec_round_trip_and_live_window(tmp_path):
    c = synthetic_candles(800)
    ds, spec = build_dataset(c, _fp(), SplitParams(), "1h")
    spec.save(tmp_path / "p.json")
    spec2 = PreprocessSpec.load(tmp_path / "p.json")
    assert spec2 == spec
    w = spec2.latest_window(c)
    np.testing.assert_array_equal(w[0], ds[spec.features].to_numpy()[-spec.seq_len:])


def test_new_features_match_their_definitions_and_warmups():
    c = synthetic_candles(100)
    names = ["realised_vol_5", "volume_z_4", "log_volume_change", "hour_sin", "hour_cos", "dow_sin"]
    f = compute_features(c, names)
    lr = np.log(c["close"] / c["close"].shift(1)).to_numpy()
    assert f["realised_vol_5"].iloc[30] == pytest.approx(np.std(lr[26:31], ddof=1), rel=1e-12)
    lv = np.log1p(c["volume"].to_numpy())
    assert f["volume_z_4"].iloc[30] == pytest.approx((lv[30] - lv[27:31].mean()) / lv[27:31].std(ddof=1), rel=1e-12)
    assert f["log_volume_change"].iloc[9] == pytest.approx(lv[9] - lv[8], rel=1e-12)
    six = int(np.nonzero(pd.DatetimeIndex(c["open_time"]).hour == 6)[0][0])
    assert f["hour_sin"].iloc[six] == pytest.approx(1.0) and f["hour_cos"].iloc[six] == pytest.approx(0.0, abs=1e-12)
    for name in names:  # the warmup is exactly the rows that are undefined
        w = warmup([name])
        assert f[name].iloc[:w].isna().all() and f[name].iloc[w:].notna().all(), name
    from mlrisk.features import is_known

    assert is_known("realised_vol_24") and not is_known("realised_vol_1") and not is_known("volume_z_x")


def test_with_gaps_kept_no_window_or_label_spans_a_gap():
    c = synthetic_candles(900)
    kept = c.drop(index=range(400, 420)).reset_index(drop=True)  # a 20-candle gap, left as it is (gap_policy keep)
    fp = FeatureParams(seq_len=16, label=LabelParams(horizon=3))
    ds, spec = build_dataset(kept, fp, SplitParams(train=0.6, val=0.2), "1h")
    gap_after = pd.Timestamp(c["open_time"].iloc[399])
    t = ds["open_time"]
    step = pd.Timedelta(hours=1)
    w = warmup(fp.names)
    for i in np.nonzero(ds["window_ok"].to_numpy())[0]:  # window rows and the features' lookback: no gap
        first = t.iloc[i] - (fp.seq_len - 1 + w) * step
        assert not (first <= gap_after < t.iloc[i]), f"window ending {t.iloc[i]} spans the gap"
    labelled = ds["label"].notna().to_numpy()
    ends = t[labelled]
    assert not ((ends <= gap_after) & (ends + 3 * step > gap_after)).any()  # a label looks 3 candles ahead
    assert spec.split["gaps"] == {"windows_dropped": fp.seq_len - 1 + w, "labels_dropped": 3}
    # without the gap nothing is dropped and nothing is reported
    _, spec2 = build_dataset(c, fp, SplitParams(train=0.6, val=0.2), "1h")
    assert "gaps" not in spec2.split


def test_final_split_trains_on_the_most_recent_window_with_no_test_part():
    c = synthetic_candles(1000)
    ds, spec = build_dataset(c, _fp(), SplitParams(method="final", val=0.2), "1h")
    parts = ds["part"].to_numpy()
    assert (parts == "test").sum() == 0 and spec.split["test"]["samples"] == 0 and spec.split["test"]["first"] is None
    assert parts[-1] == "val" and spec.split["val"]["last"] == ds["open_time"].iloc[-1].isoformat()
    n = len(ds)
    assert spec.split["val"]["rows"] == n - int(n * 0.8)
    train_end = np.nonzero(parts == "train")[0].max()
    assert np.nonzero(parts == "val")[0].min() - train_end - 1 == spec.split["purge"]  # purged before validation


def test_features_of_another_symbol_are_causal_and_matched_by_time():
    btc, eth = synthetic_candles(600, seed=1), synthetic_candles(600, seed=2, price=50.0)
    names = ["close_pct", "ETHUSDT:close_pct", "ETHUSDT:realised_vol_5"]
    f = compute_features(btc, names, {"ETHUSDT": eth})
    np.testing.assert_array_equal(f["ETHUSDT:close_pct"].to_numpy(), compute_features(eth, ["close_pct"])["close_pct"].to_numpy())
    for t in (40, 300):  # the other symbol's future changes nothing before it
        g = compute_features(btc, names, {"ETHUSDT": perturb_after(eth, t)})
        assert np.array_equal(f.iloc[: t + 1].to_numpy(), g.iloc[: t + 1].to_numpy(), equal_nan=True)
        assert not np.array_equal(f.iloc[t + 1:].to_numpy(), g.iloc[t + 1:].to_numpy(), equal_nan=True)
    # matched by open time, not by row: a shifted table gives NaN where the other symbol has no candle
    late = compute_features(btc, names, {"ETHUSDT": eth.iloc[100:]})
    assert late["ETHUSDT:close_pct"].iloc[:101].isna().all() and late["ETHUSDT:close_pct"].iloc[101:].notna().all()
    assert warmup(names) == 5
    with pytest.raises(KeyError, match="add ETHUSDT to data.others"):
        compute_features(btc, names)


def test_params_for_another_symbol_are_checked():
    from mlrisk.config.params import parse_params

    with pytest.raises(Exception, match="add ETHUSDT to data.others"):
        parse_params({"data": {"source": "binance", "start": "2024-01-01"}, "features": {"names": ["ETHUSDT:close_pct"]}})
    with pytest.raises(Exception, match="needs data.source 'binance'"):
        parse_params({"data": {"others": ["ETHUSDT"]}, "features": {"names": ["ETHUSDT:close_pct"]}})
    p = parse_params({"data": {"source": "binance", "start": "2024-01-01", "others": ["ETHUSDT"]},
                      "features": {"names": ["close_pct", "ETHUSDT:close_pct"]}})
    assert p.data.others == ["ETHUSDT"]
