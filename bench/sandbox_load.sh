#!/usr/bin/env bash
# Throughput of the PCX sandbox: PUT /v1/users/{id}/deactivate on loopback, no latency, no faults.
#
# Usage: bench/sandbox_load.sh [DURATION] [CONNECTIONS]     (defaults: 10s, 32)
# Needs wrk (Debian: apt-get update && apt-get install -y wrk). Only ever targets 127.0.0.1.
# Starts `pcxbatch sandbox` with 150,000 seeded users, cycles wrk through their IDs (each
# request is a real deactivation: a 409 only for the ~6% seeded inactive or once the IDs wrap round)
# and prints wrk's report, then stops the sandbox.
set -euo pipefail

DURATION=${1:-10s}
CONNECTIONS=${2:-32}
PORT=${PORT:-18080}
USERS=${USERS:-150000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$HERE/.venv/bin/python}
WORK=$(mktemp -d)
KEY="pcx_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cleanup() {
    if [[ -n "${SERVER_PID:-}" ]]; then kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" -c "from pcxbatch.sandbox import seed_users; print('\n'.join(u['user_id'] for u in seed_users($USERS, 0)))" >"$WORK/ids.txt"

cat >"$WORK/deactivate.lua" <<LUA
local ids = {}
for line in io.lines("$WORK/ids.txt") do ids[#ids + 1] = line end
local n = 0
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "NONE"
wrk.headers["X-Api-Key"] = "$KEY"
wrk.body = '{"updated_by":"bench","reason":"load test"}'
request = function()
    n = n + 1
    return wrk.format(nil, "/v1/users/" .. ids[(n % #ids) + 1] .. "/deactivate")
end
LUA

cd "$HERE"
"$PY" -m pcxbatch sandbox --port "$PORT" --users "$USERS" --api-key "$KEY" >"$WORK/sandbox.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
    grep -q "listening" "$WORK/sandbox.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/sandbox.log"; exit 1; }
    sleep 0.1
done
grep "listening" "$WORK/sandbox.log" || { cat "$WORK/sandbox.log"; exit 1; }

wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/deactivate.lua" "http://127.0.0.1:$PORT"
