"""The one logging setup of every mlrisk process: the stage scripts (:func:`mlrisk.stage.run_stage`)
and the live bot (:mod:`mlrisk.live.cli`) call :func:`setup_logging`.

Python logging goes to stderr as ``HH:MM:SS LEVEL   logger: message`` (times are the local clock,
seconds). The live bot's per-candle records are not Python logging: they are JSON lines written by
:class:`mlrisk.live.loop.CandleLog` (``MLRISK_LOG_FILE``), with a readable copy on stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
#: Libraries whose INFO/DEBUG chatter is hidden (WARNING and above still show).
NOISY = ("urllib3", "tensorflow", "absl", "h5py", "numba", "matplotlib")


def setup_logging(verbose: bool = False, stream: TextIO | None = None) -> None:
    """Configure the root logger once per process: DEBUG with ``verbose`` else INFO, to ``stream``
    (default stderr) in :data:`FORMAT`; the :data:`NOISY` libraries at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, datefmt=DATEFMT,
                        stream=stream or sys.stderr)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
