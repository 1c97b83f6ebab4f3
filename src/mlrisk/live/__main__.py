"""``python -m mlrisk.live``: the live bot (see :mod:`mlrisk.live.cli`)."""

import sys

from mlrisk.live.cli import main

sys.exit(main())
