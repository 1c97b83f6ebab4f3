"""The network (:mod:`.network`), its deterministic training (:mod:`.training`) and inference
(:mod:`.inference`: batch P(up) for the pipeline, a compiled single window for the live bot).

TensorFlow is imported lazily, inside the functions that need it, through
:func:`mlrisk.model.tfquiet.import_tensorflow`; its C++ start-up log level is set here, once.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
