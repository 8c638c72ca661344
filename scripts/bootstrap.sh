#!/usr/bin/env bash
# `scripts/bootstrap.sh`: .venv with the locked development dependencies and prefect-aci itself
# (editable), which gives .venv/bin/prefect-aci.
# `scripts/bootstrap.sh checkov`: .venv-checkov with checkov alone (its pins clash with the dev tools).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || { echo "bootstrap: $PYTHON not found; install Python 3.11+" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: $PYTHON is older than 3.11; set PYTHON=python3.11 (or newer)" >&2; exit 1; }

# Everything downloaded is checked against a hash in a committed lock (--require-hashes).
pip_install() { "$1/bin/python" -m pip install --quiet --disable-pip-version-check "${@:2}"; }
# pip older than 23.3 (Debian's and pyenv's 3.11 ship 23.x) refuses a hashed lock when a package
# asks for another with extras (prefect wants httpx[http2]) and the index has a newer release.
new_pip() { pip_install "$1" --require-hashes -r requirements-bootstrap.lock; }

if [ "${1:-}" = checkov ]; then
  CHECKOV_VENV="${CHECKOV_VENV:-.venv-checkov}"
  [ -x "$CHECKOV_VENV/bin/python" ] || "$PYTHON" -m venv "$CHECKOV_VENV"
  new_pip "$CHECKOV_VENV"
  pip_install "$CHECKOV_VENV" --require-hashes -r requirements-checkov.lock
  touch "$CHECKOV_VENV/.installed"
  echo "bootstrap: $CHECKOV_VENV ready" >&2
  exit 0
fi

VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
new_pip "$VENV"
pip_install "$VENV" --require-hashes -r requirements-dev.lock
# No build isolation: the build backend (setuptools) comes from the hashed dev lock above, not
# from an unpinned download of pyproject.toml's build requirements.
pip_install "$VENV" --no-deps --no-build-isolation -e .
touch "$VENV/.installed"
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version)); run $VENV/bin/prefect-aci --help" >&2
