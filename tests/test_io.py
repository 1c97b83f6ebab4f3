"""Output files: atomic, strict JSON, and the usual permissions (people serve reports/ from a web server)."""

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from mlrisk.io import json_safe, write_csv, write_json, write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_permissions_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        write_csv(tmp_path / "t.csv", pd.DataFrame({"x": [1]}))
    finally:
        os.umask(old)
    for f in ("m.json", "t.csv"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == mode, f


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    write_text(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        write_json(tmp_path / "a.txt", {"x": object()})
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_json_is_strict():
    obj = {"nan": float("nan"), "inf": np.float64("inf"), "i": np.int64(3), "b": np.bool_(False),
           "arr": np.array([1.5, np.nan]), "t": pd.Timestamp("2024-01-01", tz="UTC")}
    assert json_safe(obj) == {"nan": None, "inf": None, "i": 3, "b": False, "arr": [1.5, None],
                              "t": "2024-01-01T00:00:00+00:00"}
    json.dumps(json_safe(obj), allow_nan=False)
