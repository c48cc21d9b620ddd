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
# HTTP 8300. Other ports: HUB_PORT, LEAF_PORT, SITE_NATS_BASE (4300: site i
# listens on SITE_NATS_BASE+i) and HTTP_BASE (8300: the hub node, and site
# i on HTTP_BASE+i). A port already in use stops the script before it
# starts anything. Needs nats-server (v2.15.2 tested) on PATH or in
# $GOPATH/bin.
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
HUB_PORT=${HUB_PORT:-4222} LEAF_PORT=${LEAF_PORT:-7422}
SITE_NATS_BASE=${SITE_NATS_BASE:-4300} HTTP_BASE=${HTTP_BASE:-8300}
ports=("$HUB_PORT" "$LEAF_PORT" $((SITE_NATS_BASE + 1)) $((SITE_NATS_BASE + 2)) "$HTTP_BASE" $((HTTP_BASE + 1)) $((HTTP_BASE + 2)))
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${ports[@]}"; do
  if listening "$p"; then
    echo "port $p on 127.0.0.1 is in use; stop what listens there or choose other ports:" >&2
    echo "  HUB_PORT=$HUB_PORT LEAF_PORT=$LEAF_PORT SITE_NATS_BASE=$SITE_NATS_BASE HTTP_BASE=$HTTP_BASE $0" >&2
    exit 1
  fi
done
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
# wait_up PID LOG CHECK...: waits until CHECK succeeds; if PID exits
# first, shows the end of its LOG and stops everything.
wait_up() {
  local pid=$1 log=$2
  shift 2
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid exited; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.3
  done
}
ready() { curl -sf "127.0.0.1:$1/readyz" >/dev/null; }

# The hub: deploy/hub.conf with its store in $DATA and the chosen ports.
sed -e "s|\"./hub-data\"|\"$DATA/hub\"|" -e "s|127.0.0.1:4222|127.0.0.1:$HUB_PORT|" \
  -e "s|127.0.0.1:7422|127.0.0.1:$LEAF_PORT|" deploy/hub.conf >"$DATA/hub.conf"
"$NATS_SERVER" -c "$DATA/hub.conf" >"$DATA/hub.log" 2>&1 &
pids+=($!)
echo "hub nats-server: pid ${pids[-1]}, NATS 127.0.0.1:$HUB_PORT, leaf 127.0.0.1:$LEAF_PORT, config $DATA/hub.conf, log $DATA/hub.log"
wait_up "${pids[-1]}" "$DATA/hub.log" listening "$HUB_PORT"

waits=()
for i in 1 2; do
  "$BIN" run --name "s$i" --data-dir "$DATA/s$i" \
    --nats-listen "127.0.0.1:$((SITE_NATS_BASE + i))" --http-listen "127.0.0.1:$((HTTP_BASE + i))" \
    --leaf-remote "nats-leaf://127.0.0.1:$LEAF_PORT" \
    --table 'name=count,source=ev.*,key=subject:2,agg=count' >"$DATA/s$i.log" 2>&1 &
  pids+=($!)
  waits+=("${pids[-1]} $DATA/s$i.log $((HTTP_BASE + i))")
  echo "site s$i: pid ${pids[-1]}, NATS 127.0.0.1:$((SITE_NATS_BASE + i)), HTTP 127.0.0.1:$((HTTP_BASE + i)), log $DATA/s$i.log"
done
"$BIN" run --name hubnode --data-dir "$DATA/hubnode" --http-listen "127.0.0.1:$HTTP_BASE" \
  --nats-url "nats://127.0.0.1:$HUB_PORT" --hub-site s1 --hub-site s2 \
  --table 'name=bysite,source=*.ev.*,key=subject:1,agg=count' >"$DATA/hubnode.log" 2>&1 &
pids+=($!)
waits+=("${pids[-1]} $DATA/hubnode.log $HTTP_BASE")
echo "hub node: pid ${pids[-1]}, HTTP 127.0.0.1:$HTTP_BASE, log $DATA/hubnode.log"
for w in "${waits[@]}"; do
  read -r pid log port <<<"$w"
  wait_up "$pid" "$log" ready "$port"
done

s1=$((SITE_NATS_BASE + 1)) s2=$((SITE_NATS_BASE + 2)) h=$HTTP_BASE h1=$((HTTP_BASE + 1))
cat <<USAGE
ready. Publish at the sites (nats CLI: go install github.com/nats-io/natscli/nats@v0.5.0):
  nats --server nats://127.0.0.1:$s1 pub -J ev.a '{}' --count 10
  nats --server nats://127.0.0.1:$s2 pub -J ev.b '{}' --count 5
Read:
  curl -s 127.0.0.1:$h1/v1/tables/count/keys/a          # at site s1
  curl -s 127.0.0.1:$h/v1/tables/bysite/keys/s1        # the hub's table over both sites
  curl -s 127.0.0.1:$h/v1/sites/s1/tables/count/keys/a # s1's table, as the hub holds it
  curl -s 127.0.0.1:$h/v1/status | jq '.sites, .site_tables'
  curl -s 127.0.0.1:$h1/v1/status | jq '.hub, .leaf_connections'
Ctrl-C stops everything.
USAGE
wait
