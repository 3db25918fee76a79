#!/bin/bash
# What a `switchyard worker` does to Redis in the 5 s after Redis restarted empty (its queue no
# longer declared): script calls, all commands, the worker's log lines and CPU time.
# Compares builds: run it with each binary, on a free port (never 6379).
# usage: benches/restart_empty.sh <switchyard binary> <port>
set -u
BIN=$1; PORT=$2; D=$(mktemp -d)
redis-server --port $PORT --save '' --appendonly no --dir $D --daemonize yes --logfile $D/r.log >/dev/null
sleep 0.5
export SWITCHYARD_URL=redis://127.0.0.1:$PORT SWITCHYARD_NAMESPACE=ba
$BIN declare q >/dev/null
RUST_LOG=warn $BIN worker --id w --queue q --heartbeat-ttl-ms 3000 --maintenance-ms 200 2> $D/w.log &
WP=$!
sleep 1.5
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
sleep 0.3
redis-server --port $PORT --save '' --appendonly no --dir $D --daemonize yes --logfile $D/r2.log >/dev/null
sleep 0.3
L0=$(wc -l < $D/w.log)
C0=$(ps -o cputime= -p $WP)
sleep 5
redis-cli -p $PORT info commandstats | grep -E "fcall|function" 
echo "total commands: $(redis-cli -p $PORT info commandstats | grep -o 'calls=[0-9]*' | cut -d= -f2 | paste -sd+ | bc)"
echo "log lines in 5 s: $(( $(wc -l < $D/w.log) - L0 ))"
echo "worker cpu time before/after: $C0 / $(ps -o cputime= -p $WP)"
kill $WP; redis-cli -p $PORT shutdown nosave >/dev/null 2>&1; rm -rf $D
