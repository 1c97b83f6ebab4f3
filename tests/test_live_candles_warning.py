"""The live bot's "trained on X candles, decides on Y" warning: silent for the shipped default (a
strategy that shorts at leverage 3 is fetched, trained and backtested on the perpetual, and traded on
futures), kept for a real mismatch."""

from __future__ import annotations

import pytest

from conftest import ROOT
from mlrisk.config.params import load_params
from mlrisk.live.app import candles_warning
from mlrisk.live.risk import market_for


def test_the_shipped_default_trains_on_the_market_it_trades():
    p = load_params(ROOT / "params.yaml")
    live_market, _ = market_for(p.backtest, None, None)  # the bot's market when none is set: the strategy's
    assert live_market == p.data.market == "futures"
    assert candles_warning(p.data.market, live_market) is None


@pytest.mark.parametrize("trained, live", [("spot", "futures"), ("futures", "spot")])
def test_a_real_mismatch_still_warns(trained, live):
    msg = candles_warning(trained, live)
    assert msg == (f"the model was trained on {trained} candles; it now decides on {live} candles, whose prices differ "
                   f"by the basis (train on data.market {live} to remove the difference)")
