"""File output helpers: every output is written to a temporary file and renamed into place,
so an interrupted or failed stage never leaves a half-written file behind. Files get the usual
permissions (``0666`` less the process umask), as if created with ``open``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: some writers (Keras, parquet) look at it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; web servers must read reports/
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (see :func:`json_safe`), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | os.PathLike[str], df: pd.DataFrame, metadata: dict[str, str] | None = None) -> None:
    """Write a DataFrame to parquet (pyarrow), atomically. ``metadata`` adds key -> JSON-able
    value pairs to the file's schema metadata (read them with :func:`parquet_metadata`)."""
    with atomic_path(path) as tmp:
        if not metadata:
            df.to_parquet(tmp, engine="pyarrow", index=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        extra = {k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()}
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **extra}), tmp)


def parquet_metadata(path: str | os.PathLike[str], key: str) -> Any:
    """The value stored under ``key`` by :func:`write_parquet` (None if absent). Raises what
    pyarrow raises for an unreadable file."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(key.encode())
    return json.loads(raw) if raw else None


def read_parquet(path: str | os.PathLike[str], remedy: str) -> pd.DataFrame:
    """Read a parquet file another stage wrote. A missing or damaged file is a :class:`DataError`
    naming the file and ``remedy`` (e.g. "run `dvc repro fetch`"), not a pyarrow traceback."""
    from mlrisk.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found: {remedy}")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError, ...) for a damaged file
        raise DataError(f"{path} is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}): {remedy}") from None


def write_csv(path: str | os.PathLike[str], df: pd.DataFrame) -> None:
    """Write a DataFrame to CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def json_safe(obj: Any) -> Any:
    """The one JSON sanitiser: NaN/inf -> None, numpy scalars and arrays -> Python, timestamps ->
    ISO strings, recursively (strict JSON, as DVC's metrics need)."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj
