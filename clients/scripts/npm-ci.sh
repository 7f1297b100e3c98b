#!/usr/bin/env bash
# Installs the JavaScript clients' development packages (ws, playwright-core,
# react, zustand: tests only; the SDK itself has no dependencies) with
# `npm ci` from the committed package-lock.json, unless they are already
# installed from the current lock file. Safe to run concurrently.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>"${TMPDIR:-/tmp}/unpuzzle-clients-npm.lock"
flock 9
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found (Node.js >= 20 with npm is needed for the JavaScript tests)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
