"""Content hashes for provenance: of files (what a model was trained on; what DVC pinned) and of
candle tables (what a walk-forward fold or a holdout saw)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _file_hash(path: str | Path, algorithm: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return _file_hash(path, "sha256")


def md5_file(path: str | Path) -> str:
    """MD5 of a file's bytes, hex (what DVC 3 records as a file's ``md5`` in ``dvc.lock``)."""
    return _file_hash(path, "md5")


def frame_digest(frame: "pd.DataFrame", columns: list[str]) -> bytes:
    """A stable digest of ``columns`` of a table's rows (pandas' row hashes, index ignored)."""
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().tobytes()).digest()
