#!/usr/bin/env bash
# Instructions redis-server executes per task in `switchyard bench`'s end-to-end run, counted by
# callgrind. Unlike CPU time, the count does not move with the load on this machine or its
# speed from day to day, so two versions of the scripts can be compared run against run.
#
#   benches/callgrind_e2e.sh [batch] [tasks]          (defaults: 1 and 3000)
#
# Needs valgrind and a release build of the CLI (`cargo build --release -p switchyard-cli`).
# SWITCHYARD_BIN picks the CLI binary (to compare two builds). REDIS_SERVER picks the server binary (default: redis-server on the PATH); a build with
# symbols (from Redis's source) makes `callgrind_annotate` name the Lua functions too.
# Starts its own server on a free port (never 6379) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-1}
tasks=${2:-3000}
server=${REDIS_SERVER:-redis-server}
bin=${SWITCHYARD_BIN:-target/release/switchyard}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bin" ] || { echo "build the CLI first: cargo build --release -p switchyard-cli" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$server" --port "$port" \
  --bind 127.0.0.1 --save '' --appendonly no --hz 1 --dynamic-hz no >"$out/log" 2>&1 &
for _ in $(seq 1 150); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
url="redis://127.0.0.1:$port"
# Warm up (script loading, first allocations), then count only the measured run.
"$bin" bench --url "$url" --only e2e --e2e-tasks 500 --e2e-batches "$batch" >/dev/null
callgrind_control -z >/dev/null
"$bin" bench --url "$url" --only e2e --e2e-tasks "$tasks" --e2e-batches "$batch" | grep -E '^\| [0-9]'
callgrind_control -d >/dev/null
sleep 0.5
dump=$(grep -l 'Trigger: dump' "$out"/cg.* | head -1)
total=$(awk '/^summary:/ {print $2}' "$dump")
echo "redis-server instructions per task (batch $batch, $tasks tasks): $((total / tasks))"
