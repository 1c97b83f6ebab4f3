"""Import TensorFlow without its C++ start-up chatter (absl messages that no env var silences)."""

from __future__ import annotations

import os
import sys
from typing import Any


def import_tensorflow() -> Any:
    """Import TensorFlow (and probe for GPUs) with the process's stderr muted; exceptions still raise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
