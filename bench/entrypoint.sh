#!/bin/sh
# The baseline's entrypoint for `make bench`: the usual recipe, EXTRA_PIP_PACKAGES installed with
# pip at start (as docker/entrypoint.sh did before it moved to uv). Runs under tini.
set -eu

# Requirement strings may carry index credentials (https://user:token@host/...): never print them.
redact() { printf '%s' "$1" | sed -E 's#(://)[^/@ ]+@#\1***@#g'; }

if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
    shown=$(redact "$EXTRA_PIP_PACKAGES")
    echo "prefect-aci entrypoint: installing EXTRA_PIP_PACKAGES: $shown" >&2
    # Word splitting is intended: EXTRA_PIP_PACKAGES is a space-separated list of requirements.
    # shellcheck disable=SC2086
    if ! pip install --no-cache-dir --disable-pip-version-check --quiet $EXTRA_PIP_PACKAGES; then
        echo "prefect-aci entrypoint: error: could not install EXTRA_PIP_PACKAGES ($shown); check the names and versions, and that the index is reachable (PIP_INDEX_URL, PIP_CERT)" >&2
        exit 1
    fi
fi

if [ "$#" -eq 0 ]; then
    set -- prefect version
fi
exec "$@"
