#!/usr/bin/env bash
# Create .venv with the locked development dependencies and prefect-aci itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

command -v "$PYTHON" >/dev/null 2>&1 || { echo "bootstrap: $PYTHON not found; install Python 3.11+" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: $PYTHON is older than 3.11; set PYTHON=python3.11 (or newer)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
touch "$VENV/.installed"

# checkov in a venv of its own: its pins conflict with the development tools.
CHECKOV_VENV="${CHECKOV_VENV:-.venv-checkov}"
[ -x "$CHECKOV_VENV/bin/python" ] || "$PYTHON" -m venv "$CHECKOV_VENV"
"$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checkov.lock
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version))" >&2
