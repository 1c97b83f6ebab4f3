from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from fake_binance import FakeBinance  # noqa: E402


_SHARED_FIXTURE = re.compile(r"""scope=["'](module|package|session)["']""")


def _shares_a_fixture(path: Path) -> bool:
    """Whether test file ``path`` defines a fixture its tests share (module scope or wider)."""
    return path.suffix == ".py" and path.exists() and _SHARED_FIXTURE.search(path.read_text()) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, longest first: the files whose tests share a fixture (one worker runs them
    all, in file order), then the ``slow`` tests, then the quick ones, which fill both workers up to
    the end (in file order the longest tests came last and one worker ran alone for minutes)."""
    if config.getoption("dist", "no") == "no":
        return
    items.sort(key=lambda it: 0 if _shares_a_fixture(Path(it.path)) else 1 if it.get_closest_marker("slow") else 2)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist (``-n 2 --dist loadgroup``, pyproject's addopts): the tests of a file that defines
    a module-scoped fixture run in one worker, in file order, so the fixture is built once and tests
    that build on each other's changes to it (a tmp repository) see them; every other test goes to
    whichever worker is free. (xdist's own ``xdist_group`` marks do not reach its scheduler under
    pytest 9, so the grouping is decided here, from the test files.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared: dict[str, bool] = {}

    class ByModuleFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path not in shared:
                shared[path] = _shares_a_fixture(config.rootpath / path)
            return path if shared[path] else nodeid

    return ByModuleFixture(config, log)


@pytest.fixture
def fake_binance():
    with FakeBinance() as fb:
        yield fb


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``cond`` every 10 ms until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def synthetic_candles(n: int = 600, seed: int = 0, start: str = "2024-01-01", freq: str = "1h", price: float = 100.0) -> pd.DataFrame:
    """A random-walk kline table with the full schema (UTC ms times, float64)."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.003, n)))
    vol = rng.uniform(10, 100, n)
    t = pd.date_range(start, periods=n, freq=freq, tz="UTC").astype("datetime64[ms, UTC]")
    step = t[1] - t[0] if n > 1 else pd.Timedelta(freq)
    return pd.DataFrame({
        "open_time": t, "open": open_, "high": high, "low": low, "close": close, "volume": vol,
        "close_time": (t + step - pd.Timedelta(milliseconds=1)).astype("datetime64[ms, UTC]"),
        "quote_volume": vol * close, "trades": rng.integers(1, 100, n), "taker_buy_base": vol * rng.uniform(0.2, 0.8, n),
        "taker_buy_quote": vol * close / 2,
    })


def run_stage(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``stages/<script>.py`` from the repo in ``cwd`` with this interpreter."""
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{script}.py"), *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=600)
