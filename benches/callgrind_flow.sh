#!/usr/bin/env bash
# Instructions redis-server executes per task lifecycle (submit, receive, complete) in
# `switchyard bench --only flow`, queue by queue, counted by callgrind: what each flow-control
# feature costs next to a plain queue, in figures that do not move with the machine's load.
#
#   benches/callgrind_flow.sh [batch] [tasks] [queues]
#       (defaults: 64, 3000, plain,bounded,concurrency,rate,edf,groups,groups-rate,groups-bounded)
#
# Needs valgrind and a release build of the CLI (`cargo build --release -p switchyard-cli`).
# SWITCHYARD_BIN picks the CLI binary, REDIS_SERVER the server binary. Starts its own server
# on a free port (never 6379) under callgrind and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-64}
tasks=${2:-3000}
queues=${3:-plain,bounded,concurrency,rate,edf,groups,groups-rate,groups-bounded}
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
run() {
  "$bin" bench --url "$url" --only flow --flow-queues "$1" --flow-batches "$batch" --tasks "$2" >/dev/null
}
# Warm up (script loading, first allocations), then count each queue's run alone.
run plain 500
plain=""
echo "| queue | instructions per task (batch $batch, $tasks tasks) | × plain |"
echo "| --- | --- | --- |"
for q in ${queues//,/ }; do
  callgrind_control -z >/dev/null 2>&1
  run "$q" "$tasks"
  callgrind_control -d >/dev/null 2>&1
  sleep 0.5
  dump=$(grep -l 'Trigger: dump' "$out"/cg.* | sort | tail -1)
  total=$(awk '/^summary:/ {print $2}' "$dump")
  rm -f "$dump"
  per=$((total / tasks))
  [ -z "$plain" ] && [ "$q" = plain ] && plain=$per
  ratio=$([ -n "$plain" ] && python3 -c "print(f'{$per / $plain:.2f}×')" || echo "–")
  echo "| $q | $per | $ratio |"
done
