#!/usr/bin/env bash
# Make sure a Docker engine answers and can run a container.
# On a fresh Debian machine (our CI, our dev boxes) no engine runs: when we are root we install
# Debian's docker.io and start dockerd ourselves; anywhere else we say what to do and fail.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

LOGFILE="${DOCKERD_LOG:-/var/log/prefect-aci-dockerd.log}"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-90}"

engine_answers() { docker info >/dev/null 2>&1; }

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
log "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
