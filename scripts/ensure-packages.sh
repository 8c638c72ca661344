#!/usr/bin/env bash
# `scripts/ensure-packages.sh [program...]`: install, from Debian's packages, the programs named
# (default: all the test suite needs) that are not on PATH. They are what the tests and the local
# demo need besides the Docker engine: an OCI registry (the push target of tests, bench and demo),
# tini (the engine probe), debootstrap and Debian's keyring (the offline base), docker-compose (pytest-docker starts the
# tests' Prefect server with it), chromium (the browser the UI tests drive; Google Chrome will do)
# and npm (installs Azurite). `make image` and `make push` need none of them.
set -euo pipefail

declare -A PACKAGE_OF=(
  [docker-registry]=docker-registry
  [tini]=tini
  [debootstrap]=debootstrap
  [docker-compose]=docker-compose
  [chromium]=chromium
  [npm]=npm
)
has() {
  case "$1" in
    chromium) command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 ;;
    debootstrap) command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
if [ "$#" -eq 0 ]; then
  set -- docker-registry tini debootstrap docker-compose chromium npm
fi
missing=()
for program in "$@"; do
  [ -n "${PACKAGE_OF[$program]:-}" ] || { echo "ensure-packages: no package known for $program" >&2; exit 2; }
  has "$program" || missing+=("${PACKAGE_OF[$program]}")
done
# The offline base checks every Release signature against Debian's keyring and stops without it;
# debootstrap only recommends the keyring, and recommends are not installed here.
if [[ " $* " == *" debootstrap "* ]] && [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
  missing+=(debian-archive-keyring)
fi
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-packages: missing ${missing[*]}; install them with your package manager and retry" >&2
  exit 1
fi
echo "ensure-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# policy-rc.d may forbid starting services: that is fine, the tests start the registry themselves.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
