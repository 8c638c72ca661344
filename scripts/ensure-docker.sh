#!/usr/bin/env bash
# Make sure a Docker engine answers. An engine that already answers is used as it is, on any
# system. On a fresh Debian machine (our CI, our dev boxes) none runs: as root we install Debian's
# docker.io, start dockerd, and check that it can really run a container; anywhere else we say
# what to do and fail.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

LOGFILE="${DOCKERD_LOG:-/var/log/prefect-aci-dockerd.log}"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-90}"

engine_answers() { docker info >/dev/null 2>&1; }

PROBE_IMAGE=prefect-aci/engine-probe:1

# An engine that answers may still fail to start containers (no cgroups, no overlay, no runc).
# Nothing can be pulled here, so the probe image is one static binary from Debian's tini package.
container_runs() {
  if ! docker image inspect "$PROBE_IMAGE" >/dev/null 2>&1; then
    if [ ! -x /usr/bin/tini-static ]; then
      if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "cannot make the probe image: install Debian's tini package (tini-static) and retry"
      fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tini >/dev/null
    fi
    probe_dir=$(mktemp -d)
    cp /usr/bin/tini-static "$probe_dir/tini"
    tar -C "$probe_dir" -c tini | docker import - "$PROBE_IMAGE" >/dev/null
    rm -rf "$probe_dir"
  fi
  docker run --rm --network none "$PROBE_IMAGE" /tini --version >/dev/null
}

ready() {
  container_runs || die "the Docker engine answers but cannot run a container; see ${LOGFILE}"
  log "Docker engine answers and runs containers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
}

if engine_answers; then
  log "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "no Docker engine answers and we are not root: start Docker (or add yourself to the docker group) and retry"

if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "no Docker engine and no apt-get: install Docker for your system and retry"
  log "installing Debian's docker.io (no engine found)"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale on a new machine; without them docker.io is not found.
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd (log: $LOGFILE)"
  # setsid: dockerd must outlive the make/CI step that started it.
  setsid nohup dockerd >"$LOGFILE" 2>&1 </dev/null &
fi

deadline=$((SECONDS + WAIT_SECONDS))
until engine_answers; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 20 "$LOGFILE" >&2 || true
    die "dockerd did not answer within ${WAIT_SECONDS}s; see $LOGFILE"
  fi
  sleep 1
done
ready
