"""LiveSettings: environment, .env and overrides; one-line errors before any network call; secrets
never printed."""

from __future__ import annotations

import json
import logging

import pytest

from mlrisk.errors import SettingsError
from mlrisk.live.settings import ACK_FLAG, LiveSettings, load_live_settings

KEY, SECRET = "k3yV4lueDoNotLeak0123", "s3cretV4lueDoNotLeak4567"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No MLRISK_* variable from the developer's shell, and no .env in the working directory."""
    import os

    for k in list(os.environ):
        if k.startswith("MLRISK_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def with_keys(monkeypatch):
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", SECRET)


def test_defaults_are_paper_spot_with_no_keys():
    s = load_live_settings(env_file=None)
    assert (s.mode, s.market, s.symbol, s.interval, s.max_leverage) == ("paper", None, None, None, None)
    assert not s.sends_orders and not s.has_keys
    assert str(s.state_file) == "live/state.sqlite"
    assert s.base_url == "https://api.binance.com"


def test_environment_and_overrides(monkeypatch):
    with_keys(monkeypatch)
    monkeypatch.setenv("MLRISK_MODE", "testnet")
    monkeypatch.setenv("MLRISK_MARKET", "futures")
    monkeypatch.setenv("MLRISK_SYMBOL", "ethusdt")
    monkeypatch.setenv("MLRISK_MAX_LEVERAGE", "3")
    monkeypatch.setenv("MLRISK_FLATTEN_ON_BREACH", "true")
    s = load_live_settings(env_file=None, interval="15m", symbol=None)  # None = not given on the CLI
    assert (s.mode, s.market, s.symbol, s.interval, s.max_leverage) == ("testnet", "futures", "ETHUSDT", "15m", 3)
    assert s.flatten_on_breach and s.sends_orders and s.has_keys
    assert s.base_url == "https://testnet.binancefuture.com"
    assert load_live_settings(env_file=None, mode="paper").mode == "paper"  # an override wins


def test_dotenv_file_is_read_for_keys_and_settings(tmp_path):
    env = tmp_path / "bot.env"
    env.write_text(f"MLRISK_BINANCE_API_KEY={KEY}\nMLRISK_BINANCE_API_SECRET={SECRET}\n"
                   "MLRISK_MODE=testnet\nMLRISK_BINANCE_BASE_URL=http://127.0.0.1:9/\nMLRISK_MAX_DRAWDOWN=0.1\n")
    s = load_live_settings(env_file=env)
    assert s.mode == "testnet" and s.has_keys and s.max_drawdown == 0.1
    assert s.binance.api_secret.get_secret_value() == SECRET
    assert s.base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("overrides, words", [
    ({"mode": "testnet"}, ["mode testnet needs", "MLRISK_BINANCE_API_KEY"]),
    ({"mode": "live"}, ["mode live needs"]),
    ({"mode": "demo"}, ["mode (MLRISK_MODE)", "'paper', 'testnet' or 'live'"]),
    ({"market": "margin"}, ["market (MLRISK_MARKET)"]),
    ({"symbol": "BTC/USDT"}, ["symbol (MLRISK_SYMBOL)", "BTCUSDT"]),
    ({"interval": "7m"}, ["interval (MLRISK_INTERVAL)", "1h"]),
    ({"market": "spot", "max_leverage": 3}, ["max_leverage must be 1 on spot", "MLRISK_MARKET=futures"]),
    ({"market": "futures", "max_leverage": 500}, ["max_leverage (MLRISK_MAX_LEVERAGE)", "125"]),
    ({"max_daily_loss": 0}, ["max_daily_loss (MLRISK_MAX_DAILY_LOSS)", "greater than 0"]),
    ({"max_drawdown": 1.5}, ["max_drawdown (MLRISK_MAX_DRAWDOWN)", "less than or equal to 1"]),
    ({"max_position_notional": -10}, ["max_position_notional"]),
    ({"max_position_notional": float("nan")}, ["max_position_notional", "finite"]),
    ({"max_orders_per_minute": 0}, ["max_orders_per_minute"]),
    ({"client_id_prefix": "my-bot!"}, ["client_id_prefix", "letters or digits"]),
    ({"state_file": "x/STOP", "kill_switch_file": "x/STOP"}, ["must be different files"]),
])
def test_nonsense_is_one_line_naming_the_setting(overrides, words):
    with pytest.raises(SettingsError) as e:
        load_live_settings(env_file=None, **overrides)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("live settings: ")
    for w in words:
        assert w in msg


def test_bad_binance_variable_is_named(monkeypatch):
    monkeypatch.setenv("MLRISK_BINANCE_TIMEOUT_S", "soon")
    with pytest.raises(SettingsError, match=r"binance\.timeout_s \(MLRISK_BINANCE_TIMEOUT_S\)"):
        load_live_settings(env_file=None)
    monkeypatch.setenv("MLRISK_BINANCE_TIMEOUT_S", "0")
    with pytest.raises(SettingsError, match=r"MLRISK_BINANCE_TIMEOUT_S\): Input should be greater than 0"):
        load_live_settings(env_file=None)


def test_live_mode_needs_keys_and_the_acknowledgement(monkeypatch):
    with pytest.raises(SettingsError, match="needs MLRISK_BINANCE_API_KEY"):
        load_live_settings(env_file=None, mode="live", i_understand_real_money=True)
    with_keys(monkeypatch)
    with pytest.raises(SettingsError, match=ACK_FLAG):
        load_live_settings(env_file=None, mode="live")
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", "   ")  # blank is not a key
    with pytest.raises(SettingsError, match="needs MLRISK_BINANCE_API_KEY"):
        load_live_settings(env_file=None, mode="live", i_understand_real_money=True)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", SECRET)
    with pytest.raises(SettingsError, match="needs a position cap: set MLRISK_MAX_POSITION_NOTIONAL"):
        load_live_settings(env_file=None, mode="live", i_understand_real_money=True)
    with pytest.raises(SettingsError, match="needs a leverage cap: set MLRISK_MAX_LEVERAGE"):
        load_live_settings(env_file=None, mode="live", i_understand_real_money=True, max_position_notional=100)
    s = load_live_settings(env_file=None, mode="live", i_understand_real_money=True, max_position_notional=100,
                           max_leverage=1)
    assert s.mode == "live" and s.base_url == "https://api.binance.com" and s.max_position_notional == 100


def _bp(direction="both", leverage=3.0):
    from types import SimpleNamespace

    return SimpleNamespace(direction=direction, leverage=leverage)


def test_market_and_leverage_cap_default_to_the_pinned_strategy():
    s = load_live_settings(env_file=None)
    r = s.for_strategy(_bp())                       # the default strategy shorts with leverage 3
    assert (r.market, r.max_leverage) == ("futures", 3.0) and r.base_url == "https://fapi.binance.com"
    r = s.for_strategy(_bp("long", 1.0))
    assert (r.market, r.max_leverage) == ("spot", 1.0) and r.base_url == "https://api.binance.com"
    assert s.market is None                          # the loaded settings are not modified
    with pytest.raises(SettingsError, match="spot cannot short: set MLRISK_MARKET=futures"):
        load_live_settings(env_file=None, market="spot").for_strategy(_bp())
    with pytest.raises(SettingsError, match="spot has no leverage"):
        load_live_settings(env_file=None, market="spot").for_strategy(_bp("long", 2.0))
    with pytest.raises(SettingsError, match=r"backtest.leverage 3 exceeds MLRISK_MAX_LEVERAGE 2: raise it"):
        load_live_settings(env_file=None, max_leverage=2).for_strategy(_bp())


def test_the_exchange_client_goes_to_the_modes_host(monkeypatch):
    from mlrisk.exchange import make_client

    with_keys(monkeypatch)
    s = load_live_settings(env_file=None, mode="testnet").for_strategy(_bp())
    c = make_client(s.exchange_settings(), signed=True)
    assert c.FUTURES_URL == "https://testnet.binancefuture.com/fapi"
    s = load_live_settings(env_file=None, mode="testnet").for_strategy(_bp("long", 1.0))
    assert make_client(s.exchange_settings(), signed=True).API_URL == "https://testnet.binance.vision/api"
    monkeypatch.setenv("MLRISK_BINANCE_BASE_URL", "http://127.0.0.1:9")
    s = load_live_settings(env_file=None, mode="testnet").for_strategy(_bp())
    assert make_client(s.exchange_settings(), signed=True).FUTURES_URL == "http://127.0.0.1:9/fapi"


def test_validation_makes_no_network_call(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("network call during settings validation")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with_keys(monkeypatch)
    load_live_settings(env_file=None, mode="testnet")
    with pytest.raises(SettingsError):
        load_live_settings(env_file=None, mode="live")


def test_secrets_never_in_repr_str_json_logs_or_errors(monkeypatch, caplog):
    with_keys(monkeypatch)
    s = load_live_settings(env_file=None, mode="testnet")
    texts = [repr(s), str(s), s.model_dump_json(), json.dumps(s.model_dump(mode="json")), str(s.model_dump()),
             repr(s.binance), format(s)]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("mlrisk.live").info("settings %s %r", s, s)
        logging.getLogger("mlrisk.live").info("settings %s", s.model_dump())
    texts.append(caplog.text)
    for bad in ({"mode": "live"}, {"max_drawdown": 7, "symbol": "??"}):  # errors raised with keys set
        with pytest.raises(SettingsError) as e:
            load_live_settings(env_file=None, **bad)
        texts.append(str(e.value))
    blob = "\n".join(texts)
    assert "**********" in blob  # masked, not absent
    assert KEY not in blob and SECRET not in blob


def test_direct_construction_reads_the_binance_variables(monkeypatch):
    with_keys(monkeypatch)
    assert LiveSettings(_env_file=None, mode="testnet").has_keys


def test_docs_and_docstring_name_every_setting_and_only_real_ones():
    import re

    import mlrisk.live.settings as mod
    from conftest import ROOT
    from mlrisk.docs_reference import settings_reference

    page = (ROOT / "docs" / "live.md").read_text()
    fields = {f"MLRISK_{n.upper()}" for n in LiveSettings.model_fields if n != "binance"}

    def named(text):
        return {n for n in re.findall(r"MLRISK_[A-Z_]+[A-Z]", text) if not n.startswith("MLRISK_BINANCE")}

    assert named(mod.__doc__) == fields  # the module docstring names every setting
    assert named(page) <= fields  # the hand-written page names no setting that does not exist
    assert named(settings_reference(LiveSettings)) == fields  # the page's generated table lists them all
    assert "<!-- live-settings-reference -->" in page
    assert "does not beat its baselines" in page and "are not built" in page
