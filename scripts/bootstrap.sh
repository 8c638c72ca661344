#!/usr/bin/env bash
# `scripts/bootstrap.sh`: .venv with the locked development dependencies and prefect-aci itself
# (editable), which gives .venv/bin/prefect-aci.
# `scripts/bootstrap.sh checkov`: .venv-checkov with checkov alone (its pins clash with the dev tools).
# `scripts/bootstrap.sh az`: .venv-az with the Azure CLI alone (its pins clash too).
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

# A tool in a venv of its own, from its hashed lock.
tool_venv() {
  local venv="$1" lock="$2"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  new_pip "$venv"
  pip_install "$venv" --require-hashes -r "$lock"
  touch "$venv/.installed"
  echo "bootstrap: $venv ready" >&2
}

case "${1:-}" in
  checkov) tool_venv "${CHECKOV_VENV:-.venv-checkov}" requirements-checkov.lock; exit 0 ;;
  az) tool_venv "${AZ_VENV:-.venv-az}" requirements-az.lock; exit 0 ;;
  "") ;;
  *) echo "bootstrap: unknown venv '$1' (checkov, az or nothing)" >&2; exit 1 ;;
esac

VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
new_pip "$VENV"
pip_install "$VENV" --require-hashes -r requirements-dev.lock
# No build isolation: the build backend (setuptools) comes from the hashed dev lock above, not
# from an unpinned download of pyproject.toml's build requirements.
pip_install "$VENV" --no-deps --no-build-isolation -e .
touch "$VENV/.installed"
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version)); run $VENV/bin/prefect-aci --help" >&2
