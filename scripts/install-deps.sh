#!/usr/bin/env bash
# Installs what building, running and testing need, from Debian 12 packages
# only. Does nothing (and needs no network) when everything is there.
# Run as root, or with sudo available.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config git clang clang-format
  # libraries the services link
  libnats-dev libwebsockets-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
  libjwt-dev libssl-dev libpq-dev libjansson-dev libcmocka-dev zlib1g-dev
  # servers the stack and the tests run
  nats-server postgresql postgresql-client
  # the Python side of the contract (Django compiles the same .proto files)
  protobuf-compiler python3 python3-protobuf python3-yaml
  # libFuzzer runtime for the fuzz targets (scripts/fuzz.sh)
  libclang-rt-14-dev
  # misc tools the scripts use
  procps ca-certificates
  # the JavaScript clients' tests and demo: Node.js (>= 20, with npm) and
  # Debian's Chromium for the headless browser tests (never a downloaded one)
  nodejs chromium
)

# PostgreSQL refuses to run as root, so the scripts and tests run it as the
# unprivileged "postgres" user, which must be able to traverse "/". Some
# minimal chroots are unpacked with "/" at mode 0700; repair that.
if [ "$(id -u)" -eq 0 ] && [ $(( 0$(stat -c '%a' /) & 01 )) -eq 0 ]; then
  echo "note: '/' is not searchable by other users (mode $(stat -c '%a' /)); setting o+rx"
  chmod o+rx /
fi

missing=()
# npm comes with Node.js from some sources; Debian ships it separately.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
