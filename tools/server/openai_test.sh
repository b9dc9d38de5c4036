#!/usr/bin/env bash
# Drives `lade serve` with the official `openai` Python client (chat, completion, streaming).
# Makes a virtual environment under target/ (ignored) and installs the client from PyPI.
#   LADE_BIN: the lade binary [target/release/lade]; LADE_MODEL: the model [the default].
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${LADE_BIN:-target/release/lade}"
VENV="${LADE_PYENV:-target/pyenv-server}"
OPENAI_VERSION="openai==3.57.0"
if [ ! -x "$BIN" ]; then
  echo "error: $BIN not found; run cargo build --release first" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$OPENAI_VERSION"
fi
MODEL_ARGS=()
if [ -n "${LADE_MODEL:-}" ]; then
  MODEL_ARGS=(--model "$LADE_MODEL")
fi
exec "$VENV/bin/python" tools/server/openai_test.py --bin "$BIN" "${MODEL_ARGS[@]}"
