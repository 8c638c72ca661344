#!/usr/bin/env bash
# Debian packages the local stand-ins and the offline base need: an OCI registry (the push
# target in tests and the demo), tini (the engine probe), debootstrap (the offline base) and
# docker-compose (pytest-docker starts the tests' Prefect server with it).
set -euo pipefail

PACKAGES=(docker-registry tini debootstrap docker-compose)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
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
