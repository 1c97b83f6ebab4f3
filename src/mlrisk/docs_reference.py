"""Reference tables for the docs site, generated from the pydantic models at ``mkdocs build`` time.

``params_reference`` renders every key of a params model (dotted path, recursing into nested models
and lists of models such as ``train.layers[]``) with its type, default, allowed values (ge/gt/le/lt,
lengths, pattern, ``Literal`` choices) and description; ``settings_reference`` does the same for a
pydantic-settings model with each field's environment variable. ``docs/hooks/reference.py`` puts
them into the pages; nothing here is imported by the pipeline or the bot.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def params_model() -> type[BaseModel]:
    """The model of the whole ``params.yaml`` (the one place the docs name it)."""
    from mlrisk.config.params import Params

    return Params


def live_settings_model() -> type[BaseModel]:
    """The live bot's settings model."""
    from mlrisk.live.settings import LiveSettings

    return LiveSettings


@dataclass(frozen=True)
class Row:
    """One documented key: ``path`` is dotted (``train.layers[].units``)."""

    path: str
    type: str
    default: str
    allowed: str
    description: str


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally, or as a list's items) and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        inner, _ = _model_in(args[0])
        return inner, inner is not None
    if origin in (Union, types.UnionType):
        for a in args:
            inner, is_list = _model_in(a)
            if inner is not None:
                return inner, is_list
    return None, False


def type_name(annotation: Any) -> str:
    """A short readable name of a type annotation: ``int``, ``float or null``, ``list[str]``, ``lstm, gru``."""
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: FieldInfo) -> list[str]:
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    out = []
    for m in field.metadata:
        for attr, sym in symbols.items():
            if getattr(m, attr, None) is not None:
                out.append(f"{sym} {getattr(m, attr)}")
        if getattr(m, "min_length", None) is not None:
            out.append(f"at least {m.min_length} long")
        if getattr(m, "max_length", None) is not None:
            out.append(f"at most {m.max_length} long")
        if getattr(m, "pattern", None) is not None:
            out.append(f"matches `{m.pattern}`")
        if getattr(m, "allow_inf_nan", None) is False:
            out.append("finite")
    return out


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    try:
        return json.dumps(value, default=str)
    except TypeError:
        return str(value)


def field_rows(model: type[BaseModel], prefix: str = "") -> list[Row]:
    """Every key of ``model``, nested models and lists of models included, in declaration order."""
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner, is_list = _model_in(field.annotation)
        if inner is not None and not is_list:  # a nested section: its keys, under its name
            rows.extend(field_rows(inner, f"{path}."))
            continue
        rows.append(Row(path=path + ("[]" if is_list else ""),
                        type=f"list of {inner.__name__}" if is_list and inner else type_name(field.annotation),
                        default=_show(_default(field)),
                        allowed=", ".join(_constraints(field)),
                        description=" ".join((field.description or "").split())))
        if is_list and inner is not None:
            rows.extend(field_rows(inner, f"{path}[]."))
    return rows


def missing_descriptions(model: type[BaseModel]) -> list[str]:
    """The dotted paths of the keys of ``model`` that have no description."""
    return [r.path for r in field_rows(model) if not r.description]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _table(rows: list[Row], key_label: str) -> str:
    lines = [f"| {key_label} | type | default | allowed | description |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.path}` | {_cell(r.type)} | `{_cell(r.default)}` | {_cell(r.allowed)} | {_cell(r.description)} |")
    return "\n".join(lines)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def params_reference(model: type[BaseModel]) -> str:
    """Markdown: one heading and table per section of ``model`` (a field holding a model), its
    docstring, then every key with type, default, allowed values and description."""
    parts = []
    loose = []
    for name, field in model.model_fields.items():
        inner, is_list = _model_in(field.annotation)
        if inner is None or is_list:
            loose.append(name)
            continue
        parts.append(f"## {name}\n\n{_doc(inner)}\n\n{_table(field_rows(inner, f'{name}.'), 'key')}\n")
    if loose:
        rows = [r for r in field_rows(model) if r.path.split(".")[0].removesuffix("[]") in loose]
        parts.insert(0, f"## top level\n\n{_table(rows, 'key')}\n")
    return "\n".join(parts)


def metrics_reference() -> str:
    """Markdown: one table of the live bot's Prometheus metrics (:data:`mlrisk.live.metrics.METRICS`)."""
    from mlrisk.live.metrics import METRICS

    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, kind, labels, meaning in METRICS:
        lines.append(f"| `{name}` | {kind} | {_cell(labels)} | {_cell(meaning)} |")
    return "\n".join(lines)


def settings_reference(model: type[BaseModel], env_prefix: str | None = None) -> str:
    """Markdown: one table of a pydantic-settings model's fields with their environment variables
    (``env_prefix`` + the upper-cased name; nested settings models under their own prefix)."""
    prefix = env_prefix if env_prefix is not None else model.model_config.get("env_prefix", "")
    rows = []
    for r in field_rows(model):
        top = r.path.split(".")[0]
        inner, _ = _model_in(model.model_fields[top].annotation)
        if inner is not None:  # nested settings read their own variables
            inner_prefix = inner.model_config.get("env_prefix", f"{prefix}{top.upper()}_")
            var = inner_prefix + r.path.removeprefix(f"{top}.").upper()
        else:
            var = prefix + r.path.upper()
        rows.append(Row(var, r.type, r.default, r.allowed, r.description))
    return _table(rows, "variable")
