#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from pyproject.toml.
# Idempotent: re-running is a no-op unless pyproject.toml changed. Needs only python3 (>=3.11) and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.mlrisk-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)-${MLRISK_EXTRAS:-dev}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing mlrisk[${MLRISK_EXTRAS:-dev}] into $VENV (first time: ~2 min, ~2 GB)" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[${MLRISK_EXTRAS:-dev}]"
  echo "$want" > "$STAMP"
fi
