#!/usr/bin/env bash
# Run everything locally, without containers: installs what is missing,
# builds, starts nats-server (JetStream) and a PostgreSQL of its own (data in
# .dev/, ignored by git; no system service needed), applies the migrations,
# loads the demo data, and runs every service in the foreground until Ctrl-C.
#
#   scripts/dev-up.sh
#
# Ports (override with the variables): NATS 4222 (DEV_NATS_PORT), NATS
# monitoring 8222, PostgreSQL 5433 (DEV_PG_PORT), auth admin 9101,
# ws-edge 8080 (DEV_WS_PORT; /ws and its /healthz /readyz /metrics),
# analytics-aggregator admin 9102, notification-dispatcher admin 9103; the
# demo pages on ws-edge's port (http://localhost:8080/) with demo traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
scripts/build.sh

DEV=$ROOT/.dev
NATS_PORT=${DEV_NATS_PORT:-4222}
PG_PORT=${DEV_PG_PORT:-5433}
WS_PORT=${DEV_WS_PORT:-8080}
# Development-only secret: production reads SUPABASE_JWT_SECRET from a Secret.
export SUPABASE_JWT_SECRET=${SUPABASE_JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}
export NATS_URL=nats://127.0.0.1:$NATS_PORT
export DATABASE_URL=postgresql://unpuzzle@127.0.0.1:$PG_PORT/unpuzzle
mkdir -p "$DEV/nats" "$DEV/log"

pids=()
cleanup() {
  echo "stopping..."
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  # runuser does not pass SIGTERM on to PostgreSQL: stop it by its data dir.
  if [ -n "${PG_BIN:-}" ] && [ -f "$DEV/pg/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$DEV/pg" -m fast >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# --- NATS with JetStream ---
nats-server -a 127.0.0.1 -p "$NATS_PORT" -m 8222 -js -sd "$DEV/nats" >"$DEV/log/nats.log" 2>&1 &
pids+=($!)

# --- PostgreSQL (refuses to run as root: use the postgres user then) ---
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ ! -s "$DEV/pg/PG_VERSION" ]; then
  mkdir -p "$DEV/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DEV/pg"
  chmod 700 "$DEV/pg"
  as_pg "$PG_BIN/initdb" -D "$DEV/pg" -U postgres -A trust -E UTF8 --locale=C >"$DEV/log/initdb.log"
fi
mkdir -p "$DEV/pgsock"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DEV/pgsock"
as_pg "$PG_BIN/postgres" -D "$DEV/pg" -p "$PG_PORT" -k "$DEV/pgsock" \
  -c listen_addresses=127.0.0.1 >"$DEV/log/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
  sleep 0.1
done
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<SQL
SELECT 'CREATE ROLE unpuzzle LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'unpuzzle')\gexec
SELECT 'CREATE DATABASE unpuzzle OWNER unpuzzle' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'unpuzzle')\gexec
SQL
scripts/migrate.sh
psql -q "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/demo/demo_data.sql
echo "demo data loaded (course demo-course, users demo-instructor, demo-student-1, demo-student-2, demo-admin)"

# --- services ---
ADMIN_PORT=9101 build/bin/auth &
pids+=($!)
# The demo pages (clients/demo, assembled into .dev/www with the SDK and a
# config.js holding the DEVELOPMENT JWT secret) are served by ws-edge itself
# (WS_STATIC_DIR: development only). Browsers on other origins are refused.
# Node.js >= 20 (from the npm registry when the system's is older).
clients/scripts/npm-ci.sh
NODE=clients/scripts/node.sh
"$NODE" clients/demo/build.mjs "$DEV/www" --secret "$SUPABASE_JWT_SECRET" >/dev/null
# The demo pages are served from localhost; browsers elsewhere are refused.
WS_PORT=$WS_PORT EDGE_ID=dev-edge WS_STATIC_DIR="$DEV/www" \
  WS_ALLOWED_ORIGINS=${WS_ALLOWED_ORIGINS:-http://localhost:3000,http://127.0.0.1:3000,http://localhost:$WS_PORT,http://127.0.0.1:$WS_PORT} \
  build/bin/ws-edge &
pids+=($!)
ADMIN_PORT=9102 ANALYTICS_REPLICA_ID=dev-analytics build/bin/analytics-aggregator &
pids+=($!)
ADMIN_PORT=9103 build/bin/notification-dispatcher &
pids+=($!)
# Demo traffic: simulated students through the real services (DEMO_TRAFFIC=0: none).
if [ "${DEMO_TRAFFIC:-1}" != 0 ]; then
  node_ws=()
  "$NODE" -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null || node_ws=(--experimental-websocket)
  NODE_NO_WARNINGS=1 "$NODE" "${node_ws[@]}" clients/demo/traffic/generator.mjs \
    --url "ws://127.0.0.1:$WS_PORT/ws" --nats "$NATS_URL" --students "${DEMO_STUDENTS:-6}" \
    >"$DEV/log/demo-traffic.log" 2>&1 &
  pids+=($!)
fi

cat <<INFO

Unpuzzle realtime is running (Ctrl-C stops everything):
  NATS          $NATS_URL   (monitoring http://127.0.0.1:8222)
  PostgreSQL    $DATABASE_URL
  auth          http://127.0.0.1:9101/healthz /readyz /metrics
  ws-edge       ws://127.0.0.1:$WS_PORT/ws   (and /healthz /readyz /metrics)
  analytics     http://127.0.0.1:9102/healthz /readyz /metrics
  notifications http://127.0.0.1:9103/healthz /readyz /metrics
Demo (development only; simulated students keep it moving, log in .dev/log/demo-traffic.log):
  open          http://localhost:$WS_PORT/
  dashboard     http://localhost:$WS_PORT/instructor.html
  student       http://localhost:$WS_PORT/student.html?user=demo-student-1   (open it twice: progress follows)
Try it (in another shell, from $ROOT):
  export SUPABASE_JWT_SECRET=$SUPABASE_JWT_SECRET
  TOKEN=\$(build/bin/rtctl token demo-student-1)
  build/bin/rtctl tail course:demo-course --token "\$TOKEN" --url ws://127.0.0.1:$WS_PORT/ws &
  build/bin/rtctl publish course:demo-course confusion create \\
    '{"confusionId":"c1","courseId":"demo-course","lessonId":"demo-lesson-1","userId":"demo-student-2","videoTimestampSec":42}'
Logs of nats and postgres: .dev/log/
INFO
wait -n "${pids[@]}"
echo "a process exited; stopping the rest"
