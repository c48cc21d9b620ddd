#!/usr/bin/env bash
# Runs a hub and two edge sites on one machine, on loopback (README "Edge
# sites"): a hub nats-server (deploy/hub.conf), sites s1 and s2 (leaf nodes
# of the hub, each counting events per device), and a hub node that counts
# every site's events per site and serves the sites' tables.
#
#   deploy/hub-and-sites.sh             # Ctrl-C stops everything
#   DATA=/tmp/et deploy/hub-and-sites.sh  # keep the data there (default: a temp dir, removed)
#
# Ports: hub NATS 4222, leaf 7422; site i NATS 430i, HTTP 830i; hub node
# HTTP 8300. Needs nats-server (v2.15.2 tested) on PATH or in $GOPATH/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./edgetables}
if [ ! -x "$BIN" ]; then
  go build -o "$BIN" ./cmd/edgetables
fi
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo "$(go env GOPATH)/bin/nats-server")}
if [ ! -x "$NATS_SERVER" ]; then
  echo "no nats-server: go install github.com/nats-io/nats-server/v2@v2.15.2" >&2
  exit 1
fi
if [ -n "${DATA:-}" ]; then
  mkdir -p "$DATA"
  cleanup_data=
else
  DATA=$(mktemp -d -t edgetables-hub-XXXXXX)
  cleanup_data=$DATA
fi
pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping…"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$cleanup_data" ]; then rm -rf "$cleanup_data"; fi
}
trap stop INT TERM EXIT
wait_http() { until curl -sf "$1/readyz" >/dev/null; do sleep 0.3; done; }

# The hub: deploy/hub.conf with its store in $DATA.
sed "s|\"./hub-data\"|\"$DATA/hub\"|" deploy/hub.conf >"$DATA/hub.conf"
"$NATS_SERVER" -c "$DATA/hub.conf" >"$DATA/hub.log" 2>&1 &
pids+=($!)
echo "hub nats-server: pid ${pids[-1]}, NATS 127.0.0.1:4222, leaf 127.0.0.1:7422, config $DATA/hub.conf, log $DATA/hub.log"
until (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; do sleep 0.2; done

for i in 1 2; do
  "$BIN" run --name "s$i" --data-dir "$DATA/s$i" \
    --nats-listen "127.0.0.1:430$i" --http-listen "127.0.0.1:830$i" \
    --leaf-remote nats-leaf://127.0.0.1:7422 \
    --table 'name=count,source=ev.*,key=subject:2,agg=count' >"$DATA/s$i.log" 2>&1 &
  pids+=($!)
  echo "site s$i: pid ${pids[-1]}, NATS 127.0.0.1:430$i, HTTP 127.0.0.1:830$i, log $DATA/s$i.log"
done
"$BIN" run --name hubnode --data-dir "$DATA/hubnode" --http-listen 127.0.0.1:8300 \
  --nats-url nats://127.0.0.1:4222 --hub-site s1 --hub-site s2 \
  --table 'name=bysite,source=*.ev.*,key=subject:1,agg=count' >"$DATA/hubnode.log" 2>&1 &
pids+=($!)
echo "hub node: pid ${pids[-1]}, HTTP 127.0.0.1:8300, log $DATA/hubnode.log"
for a in 127.0.0.1:8301 127.0.0.1:8302 127.0.0.1:8300; do wait_http "$a"; done

cat <<'USAGE'
ready. Publish at the sites (nats CLI: go install github.com/nats-io/natscli/nats@v0.5.0):
  nats --server nats://127.0.0.1:4301 pub -J ev.a '{}' --count 10
  nats --server nats://127.0.0.1:4302 pub -J ev.b '{}' --count 5
Read:
  curl -s 127.0.0.1:8301/v1/tables/count/keys/a          # at site s1
  curl -s 127.0.0.1:8300/v1/tables/bysite/keys/s1        # the hub's table over both sites
  curl -s 127.0.0.1:8300/v1/sites/s1/tables/count/keys/a # s1's table, as the hub holds it
  curl -s 127.0.0.1:8300/v1/status | jq '.sites, .site_tables'
  curl -s 127.0.0.1:8301/v1/status | jq '.hub, .leaf_connections'
Ctrl-C stops everything.
USAGE
wait
