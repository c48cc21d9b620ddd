#!/usr/bin/env bash
# Runs a three-node edgetables cluster on loopback, for trying it out.
#
#   deploy/local-cluster.sh            # start n0, n1, n2 (Ctrl-C stops them)
#   DATA=/tmp/et deploy/local-cluster.sh
#
# Node i listens for NATS clients on 4222+i, HTTP on 8080+i and routes on
# 6222+i; data goes to $DATA/n<i> (default ./data-cluster). Extra arguments
# are passed to every node (e.g. --table specs; a default table is used when
# none is given). A port already in use stops it before it starts anything;
# a node that exits before it is ready stops it with the end of its log.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-./data-cluster}
BIN=${BIN:-./edgetables}
if [ ! -x "$BIN" ]; then
  go build -o "$BIN" ./cmd/edgetables
fi
tables=("$@")
if [ ${#tables[@]} -eq 0 ]; then
  tables=(--table 'name=count,source=sensors.*.temp,key=subject:2,agg=count'
          --table 'name=sum,source=sensors.*.temp,key=subject:2,agg=sum,field=value')
fi
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for i in 0 1 2; do
  for p in $((4222 + i)) $((8080 + i)) $((6222 + i)); do
    if listening "$p"; then
      echo "port $p on 127.0.0.1 is in use (a node from the README's quick start?): stop what listens there first" >&2
      exit 1
    fi
  done
done
routes=nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 0 1 2; do
  mkdir -p "$DATA/n$i"
  "$BIN" run --name "n$i" --data-dir "$DATA/n$i" \
    --nats-listen "127.0.0.1:$((4222 + i))" --http-listen "127.0.0.1:$((8080 + i))" \
    --cluster-listen "127.0.0.1:$((6222 + i))" --routes "$routes" \
    "${tables[@]}" >"$DATA/n$i.log" 2>&1 &
  pids+=($!)
  echo "n$i: pid ${pids[-1]}, NATS 127.0.0.1:$((4222 + i)), HTTP 127.0.0.1:$((8080 + i)), log $DATA/n$i.log"
done
echo "waiting for the cluster…"
for i in 0 1 2; do
  until curl -sf "127.0.0.1:$((8080 + i))/readyz" >/dev/null; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "n$i exited; the end of $DATA/n$i.log:" >&2
      tail -n 20 "$DATA/n$i.log" >&2
      exit 1
    fi
    sleep 0.5
  done
done
"$BIN" status --http "127.0.0.1:8080"
echo "cluster ready; Ctrl-C stops it"
wait
