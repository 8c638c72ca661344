#!/bin/sh
# Runs under tini (PID 1). Installs EXTRA_PIP_PACKAGES, then becomes the command: exec keeps
# signals going straight from tini to it.
set -eu

# Requirement strings and installer output may carry index credentials
# (https://user:token@host/...): never print them.
redact() { sed -E 's#(://)[^/@ ]+@#\1***@#g'; }

# uv, in a subshell so its settings stay out of the command's environment. pip's settings keep
# working: uv reads its own names.
install() (
    cert="${SSL_CERT_FILE:-${PIP_CERT:-}}"
    if [ -n "$cert" ]; then export SSL_CERT_FILE="$cert"; fi
    if [ -n "${PIP_INDEX_URL:-}" ]; then export UV_INDEX_URL="${UV_INDEX_URL:-$PIP_INDEX_URL}"; fi
    if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then
        export UV_EXTRA_INDEX_URL="${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}"
    fi
    # Word splitting is intended: EXTRA_PIP_PACKAGES is a space-separated list of requirements.
    # Globbing is not: a requirement like `pkg[extra]` or `*` stays as written (set -f).
    set -f
    # shellcheck disable=SC2086
    exec uv pip install --quiet --no-cache --python /opt/prefect/venv/bin/python \
        $EXTRA_PIP_PACKAGES
)

if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
    shown=$(printf '%s' "$EXTRA_PIP_PACKAGES" | redact)
    echo "prefect-aci entrypoint: installing EXTRA_PIP_PACKAGES with uv: $shown" >&2
    output=$(mktemp)
    if ! install >"$output" 2>&1; then
        redact <"$output" >&2
        reason=$(redact <"$output" | grep -v '^[[:space:]]*$' | tail -n 3 | tr '\n' ' ' | tr -s ' ')
        rm -f "$output"
        message="prefect-aci entrypoint: error: could not install EXTRA_PIP_PACKAGES ($shown): ${reason}- check the names and versions, and that the index is reachable (PIP_INDEX_URL or UV_INDEX_URL, PIP_CERT or SSL_CERT_FILE)"
        echo "$message" >&2
        # The worker sets both for a flow run: the reason then reaches the run's logs and state.
        if [ -n "${PREFECT__FLOW_RUN_ID:-}" ] && [ -n "${PREFECT_API_URL:-}" ]; then
            python3 /opt/prefect/report_start_failure.py "$message" || true
        fi
        exit 1
    fi
    redact <"$output" >&2
    rm -f "$output"
fi

if [ "$#" -eq 0 ]; then
    set -- prefect version
fi
exec "$@"
