"""The pinned model: the files ``dvc repro`` produced and recorded in ``dvc.lock``, checked before use.

The bot trades only a model whose files are exactly the ones the pipeline evaluated and backtested:

- ``models/model.keras``, ``models/preprocess.json`` and ``models/model.json`` must have the MD5s
  that ``dvc.lock`` records for them (DVC's hash of a file is the MD5 of its bytes);
- the backtest parameters in ``params.yaml`` must be the ones the ``backtest`` stage ran with
  (``dvc.lock`` records them), so the bot trades the strategy the backtest measured;
- the model's symbol (``data.symbol`` of the ``preprocess`` stage in ``dvc.lock``), interval and
  features (``models/preprocess.json``, which must agree with ``models/model.json``) are what the
  bot will trade (:meth:`PinnedModel.resolve`).

``rev`` (a git revision or tag) reads all of these at that revision through :func:`dvc.api.open`:
git-tracked files from git, DVC-tracked ones from the local cache or the DVC remote.
Every problem is one :class:`~mlrisk.errors.DataError` / :class:`~mlrisk.errors.SettingsError` line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlrisk.config.backtest import BacktestParams
from mlrisk.config.params import Params, load_params
from mlrisk.errors import DataError, MlriskError, SettingsError
from mlrisk.hashing import md5_file

MODEL_FILES = ("models/model.keras", "models/preprocess.json", "models/model.json")
GIT_FILES = ("dvc.lock", "params.yaml")


def locked_outs(lock: dict[str, Any]) -> dict[str, str]:
    """Every stage output's MD5 recorded in a parsed ``dvc.lock``: ``{path: md5}``."""
    out: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for o in stage.get("outs") or []:
            if "md5" in o:
                out[o["path"]] = o["md5"]
    return out


def locked_params(lock: dict[str, Any], stage: str) -> dict[str, Any]:
    """The ``params.yaml`` values a stage ran with, as recorded in ``dvc.lock`` (dotted keys kept)."""
    return ((lock.get("stages") or {}).get(stage) or {}).get("params", {}).get("params.yaml", {})


@dataclass
class PinnedModel:
    """The checked model files (in ``dir``: ``model.keras``, ``preprocess.json``, ``model.json``,
    ``params.yaml``), what they were built for, and the validated parameters."""

    dir: Path
    symbol: str
    interval: str
    features: list[str]
    seq_len: int
    params: Params
    md5: dict[str, str]
    rev: str | None = None
    _tmp: Any = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.dir / "model.keras"

    @property
    def spec_path(self) -> Path:
        return self.dir / "preprocess.json"

    @property
    def backtest(self) -> BacktestParams:
        return self.params.backtest

    def resolve(self, symbol: str | None, interval: str | None) -> tuple[str, str]:
        """The symbol and interval to trade: the settings' if given (they must equal the model's),
        else the model's. Raises :class:`SettingsError` on a mismatch."""
        if symbol is not None and symbol != self.symbol:
            raise SettingsError(f"MLRISK_SYMBOL {symbol} is not the model's symbol {self.symbol}: "
                                "unset it or train a model for that symbol (data.symbol, dvc repro)")
        if interval is not None and interval != self.interval:
            raise SettingsError(f"MLRISK_INTERVAL {interval} is not the model's interval {self.interval}: "
                                "unset it or train a model for that interval (data.interval, dvc repro)")
        return self.symbol, self.interval

    def close(self) -> None:
        """Remove the temporary copy made for ``rev`` (nothing for the working tree's files)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _read_rev(repo: Path, rev: str, dest: Path) -> None:
    """Copy the model files, ``dvc.lock`` and ``params.yaml`` of ``rev`` into ``dest`` via dvc.api."""
    import dvc.api
    from dvc.exceptions import DvcException

    for path in GIT_FILES + MODEL_FILES:
        target = dest / Path(path).name
        try:
            with dvc.api.open(path, repo=str(repo), rev=rev, mode="rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (DvcException, FileNotFoundError, OSError) as e:
            what = " ".join(str(e).split())[:200] or type(e).__name__
            raise DataError(f"--rev {rev}: cannot read {path} ({what}): check the revision exists and its model "
                            "is in the DVC cache or remote (`dvc push` where it was trained)") from None
        except Exception as e:  # scmrepo/dvc raise their own types for an unknown revision
            if type(e).__name__ in ("RevError", "SCMError", "CloneError", "NoRemoteError"):
                raise DataError(f"--rev {rev}: {' '.join(str(e).split())[:200]}: name an existing git revision "
                                "or tag") from None
            raise


def pin_model(root: str | Path = ".", rev: str | None = None) -> PinnedModel:
    """Load and check the model of the working tree at ``root`` (``rev`` None) or of git revision
    ``rev`` of the repository at ``root``. Raises :class:`DataError` naming the first problem."""
    root = Path(root)
    # a private copy: the files checked are the files loaded, whatever `dvc repro` does meanwhile
    tmp = tempfile.TemporaryDirectory(prefix="mlrisk-model-")
    d = Path(tmp.name)
    try:
        if rev is None:
            for p in GIT_FILES + MODEL_FILES:
                if (root / p).exists():
                    shutil.copy2(root / p, d / Path(p).name)
        else:
            _read_rev(root, rev, d)
        return _check({p: d / Path(p).name for p in GIT_FILES + MODEL_FILES}, d, rev, tmp)
    except BaseException:
        tmp.cleanup()
        raise


def _check(src: dict[str, Path], d: Path, rev: str | None, tmp: Any) -> PinnedModel:
    where = f" at {rev}" if rev else ""
    for p in ("dvc.lock",) + MODEL_FILES:
        if not src[p].exists():
            raise DataError(f"{p}{where} not found: run `dvc repro` first (or `dvc pull`)")
    try:
        lock = yaml.safe_load(src["dvc.lock"].read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"dvc.lock{where} is not YAML ({' '.join(str(e).split())[:120]}): restore it from git") from None
    outs = locked_outs(lock)
    md5 = {}
    for p in MODEL_FILES:
        if p not in outs:
            raise DataError(f"dvc.lock{where} records no hash for {p}: run `dvc repro` to pin the model")
        got = md5_file(src[p])
        if got != outs[p]:
            raise DataError(f"{p}{where} has MD5 {got} but dvc.lock records {outs[p]}: the file changed after "
                            "`dvc repro`; run `dvc checkout` (or `dvc repro`) to use a pinned model")
        md5[p] = got
    spec = json.loads(src["models/preprocess.json"].read_text())
    meta = json.loads(src["models/model.json"].read_text())
    trained = meta.get("preprocess", {})
    for key in ("features", "seq_len", "interval", "mean", "scale"):
        if trained.get(key) != spec.get(key):
            raise DataError(f"models/model.json{where} was trained with {key}={trained.get(key)!r} but "
                            f"models/preprocess.json has {spec.get(key)!r}: run `dvc repro` so they agree")
    from mlrisk.features import others_needed

    if others_needed(spec["features"]):
        raise DataError(f"the model{where} uses features of other symbols ({', '.join(others_needed(spec['features']))}): "
                        "the live bot does not fetch those yet; train one on the traded symbol's features")
    symbol = locked_params(lock, "preprocess").get("data.symbol")
    if not symbol:
        raise DataError(f"dvc.lock{where} records no data.symbol for the preprocess stage: run `dvc repro`")
    try:
        params = load_params(src["params.yaml"])
    except MlriskError as e:
        raise DataError(f"params.yaml{where}: {e}") from None
    ran = locked_params(lock, "backtest").get("backtest")
    if ran is None:
        raise DataError(f"dvc.lock{where} records no backtest parameters: run `dvc repro backtest`")
    if BacktestParams(**ran) != params.backtest:
        diff = sorted(k for k, v in params.backtest.model_dump().items() if BacktestParams(**ran).model_dump().get(k) != v)
        raise DataError(f"params.yaml{where}: backtest {', '.join(diff)} differ from what the backtest stage ran "
                        "(dvc.lock): run `dvc repro` so the bot trades the strategy the backtest measured")
    return PinnedModel(dir=d, symbol=str(symbol), interval=str(spec["interval"]), features=list(spec["features"]),
                       seq_len=int(spec["seq_len"]), params=params, md5=md5, rev=rev, _tmp=tmp)
