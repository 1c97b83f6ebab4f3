"""What every section shares: the strict base model, the date validator, reading ``params.yaml``
and turning pydantic's errors into one line that names the key, the bad value and what is allowed.

:func:`load_sections` validates only the sections a stage reads (plus the top-level keys, which
must be section names); the whole file, cross-section rules included, is validated by
:func:`mlrisk.config.params.load_params` (the ``check_params`` stage, upstream of every stage).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mlrisk.errors import ParamsError
from mlrisk.times import utc

SECTIONS = ("data", "features", "split", "train", "evaluate", "backtest")  # params.yaml's sections, in order

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def check_date(v: str | None) -> str | None:
    """A UTC date or ISO timestamp (kept as given), or None."""
    if v is None:
        return v
    try:
        utc(v)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a date (use YYYY-MM-DD or an ISO timestamp, UTC): {e}") from None
    return str(v)


def date_as_str(v: Any) -> Any:
    """YAML reads an unquoted 2024-01-01 as a date: keep it as text."""
    return None if v is None else str(v)


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the key at ``loc`` under ``root`` (for listing allowed keys)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _format_error(err: Any, root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) if loc else "(top level)"
    if err["type"] == "extra_forbidden":
        model = _model_at(root, loc)
        allowed = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}? " if close else ""
        return f"unknown key {key!r}: {hint}allowed here: {', '.join(allowed)}"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if msg.startswith(f"{key}.") or msg.startswith(f"{key} "):
        return msg
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err.get("input"), dict):
        return f"{key} = {err['input']!r}: {msg}"
    return f"{key}: {msg}"


def validate(model: type[M], raw: Any, source: str = "params.yaml") -> M:
    """Validate a parsed params mapping against ``model`` (whose fields are sections); raise
    :class:`ParamsError` with every problem on one line."""
    if raw is None:
        raise ParamsError(f"{source} is empty: it needs the sections {', '.join(SECTIONS)}; "
                          f"restore it with `git checkout {source}`")
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (data, features, ...), got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        errors = [_format_error(err, model) for err in e.errors()]
        raise ParamsError(f"{source}: " + "; ".join(errors)) from None


def read_params_file(path: str | Path) -> Any:
    """The parsed YAML of ``path``. Raises :class:`ParamsError` (one line) when it is missing or not YAML."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found; run from the project root or pass --params")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None


def sections_model(sections: Mapping[str, type[_Section]]) -> type[_Section]:
    """A model of the whole file that validates only ``sections`` (name -> section model; absent:
    its defaults) and accepts anything under the other section names; other top-level keys are errors."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"not params.yaml sections: {sorted(unknown)}")
    fields: dict[str, Any] = {
        name: (sections[name], Field(default_factory=sections[name])) if name in sections else (Any, None)
        for name in SECTIONS}
    return create_model("StageParams", __base__=_Section, **fields)


def load_sections(path: str | Path, sections: Mapping[str, type[_Section]]) -> Any:
    """Read ``path`` and validate the ``sections`` a stage reads; the result has one attribute per
    section (``.data``, ``.backtest``...). Raises :class:`ParamsError` (one line) on any problem in them."""
    return validate(sections_model(sections), read_params_file(path), str(path))
