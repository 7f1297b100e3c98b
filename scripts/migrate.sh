#!/usr/bin/env bash
# Applies deploy/sql/*.sql to $DATABASE_URL in file-name order. Every
# migration is idempotent, so running this twice is harmless.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?DATABASE_URL must be set}"
for f in $(LC_ALL=C ls deploy/sql/*.sql); do
  psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -f "$f" >/dev/null
  echo "applied $(basename "$f")"
done
