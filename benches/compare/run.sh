#!/usr/bin/env bash
# Side-by-side benchmark of Chorus, ejabberd 23.01 and NATS 2.9.10 on this
# machine: installs the two Debian packages, builds Chorus and chorus-bench in
# release, starts each server on loopback in turn (Chorus with a temporary
# data folder), runs the same workloads against each, then writes
# docs/benchmarks.md. Every server it starts is stopped when it exits.
#
#   bash benches/compare/run.sh
#
# Sizes can be changed through the environment (defaults in brackets):
# IDLE_CONNS [5000], PAIRS [500],
# RATES [250,500,1000,2000,3000,4000,5000,6000,8000,12000,16000,20000,24000,32000],
# STEP [5s], GROUP_MEMBERS [5000], GROUP_RATE [10], GROUP_DURATION [10s],
# CHURN_POOL [1000], CHURN_RATE [200], CHURN_DURATION [10s], MASS [2000],
# MASS_WINDOW [1s], TARGETS ["chorus ejabberd nats chorus-cluster"], OUT [docs/benchmarks.md],
# CLUSTER_NODES [3]: nodes of the chorus-cluster target (one-to-one only),
# RESULTS_DIR [a temporary folder]: where the JSON results are kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/scripts/setup.sh"

IDLE_CONNS="${IDLE_CONNS:-5000}"
PAIRS="${PAIRS:-500}"
RATES="${RATES:-250,500,1000,2000,3000,4000,5000,6000,8000,12000,16000,20000,24000,32000}"
STEP="${STEP:-5s}"
GROUP_MEMBERS="${GROUP_MEMBERS:-5000}"
GROUP_RATE="${GROUP_RATE:-10}"
GROUP_DURATION="${GROUP_DURATION:-10s}"
CHURN_POOL="${CHURN_POOL:-1000}"
CHURN_RATE="${CHURN_RATE:-200}"
CHURN_DURATION="${CHURN_DURATION:-10s}"
MASS="${MASS:-2000}"
MASS_WINDOW="${MASS_WINDOW:-1s}"
TARGETS="${TARGETS:-chorus ejabberd nats chorus-cluster}"
CLUSTER_NODES="${CLUSTER_NODES:-3}"
OUT="${OUT:-$root/docs/benchmarks.md}"

# Ports away from the defaults, so that a node or service already running
# on this machine is left alone. Loopback only.
CHORUS_TCP=127.0.0.1:17100
CHORUS_HTTP=127.0.0.1:17180
CHORUS_PEER=127.0.0.1:17200
XMPP=127.0.0.1:15222
NATS=127.0.0.1:14222
ADMIN_PASSWORD="bench-admin-$RANDOM$RANDOM"

work="$(mktemp -d /tmp/chorus-compare.XXXXXX)"
chmod 755 "$work"
results="${RESULTS_DIR:-$work/results}"
mkdir -p "$results" "$results/cluster"
server_pid=""
cluster_pids=()
epmd_was_running=no
pgrep -x epmd >/dev/null && epmd_was_running=yes

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}

cleanup() {
    stop_server
    stop_cluster
    if [ -n "${ejabberd_launcher:-}" ]; then
        kill -TERM "$ejabberd_launcher" 2>/dev/null || true
    fi
    if [ "$epmd_was_running" = no ] && command -v epmd >/dev/null; then
        epmd -kill >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Prints a phase heading with the time and the machine's load.
phase() {
    echo "== $(date +%T) $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

# Waits (at most $2 seconds) until something accepts connections on $1.
wait_port() {
    local host="${1%:*}" port="${1##*:}" deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "nothing listens on $1" >&2; return 1; }
        sleep 0.2
    done
}

phase packages
ensure_debian_packages ejabberd nats-server
ejabberd_version="$(dpkg-query -W -f '${Version}' ejabberd)"
nats_version="$(nats-server --version | sed 's/.*v//')"

phase "build (release)"
(cd "$root" && cargo build --release --quiet -p chorus -p chorus-bench)
# Private copies: other builds may replace the binaries in the shared target folder.
cp "$CARGO_TARGET_DIR/release/chorus" "$CARGO_TARGET_DIR/release/chorus-bench" "$work/"
chorus="$work/chorus"
bench="$work/chorus-bench"
chorus_rev="${CHORUS_REV:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}"

# Runs one chorus-bench command, echoing it first.
run() {
    echo "+ chorus-bench $*" >&2
    "$bench" "$@"
}

accounts=$IDLE_CONNS
for n in $((2 * PAIRS)) "$GROUP_MEMBERS" "$CHURN_POOL" "$MASS"; do
    [ "$n" -gt "$accounts" ] && accounts=$n
done

start_chorus() {
    CHORUS_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$chorus" serve --config "$work/chorus.toml" \
        >>"$work/chorus.out" 2>>"$work/chorus.err" &
    server_pid=$!
    wait_port "$CHORUS_HTTP" 120
}

start_ejabberd() {
    local ej="$work/ejabberd"
    # setpriv, not su: su resets the open-file limit through PAM (to 1,024).
    (cd "$ej" && setsid setpriv --reuid=ejabberd --regid=ejabberd --clear-groups \
        env HOME="$ej/spool" /usr/sbin/ejabberdctl --config-dir "$ej" --config "$ej/ejabberd.yml" \
        --ctl-config "$ej/ejabberdctl.cfg" --logs "$ej/logs" --spool "$ej/spool" \
        foreground >>"$ej/out.log" 2>&1) &
    ejabberd_launcher=$!
    wait_port "$XMPP" 120
    # The Erlang VM is a child of ejabberdctl: find it by its node name.
    server_pid="$(pgrep -f 'beam.smp.*chorusbench@localhost' | head -1)"
}

stop_ejabberd() {
    stop_server
    wait "$ejabberd_launcher" 2>/dev/null || true
    ejabberd_launcher=""
}

# The chorus-cluster target: CLUSTER_NODES nodes on loopback, peer links
# with a CA made for the run, replication factor CLUSTER_NODES.
cluster_tcp() { echo "127.0.0.1:$((17300 + $1))"; }
cluster_http() { echo "127.0.0.1:$((17400 + $1))"; }
cluster_peer() { echo "127.0.0.1:$((17500 + $1))"; }

start_cluster() {
    local certs="$work/certs" n
    "$chorus" cluster init-ca --out "$certs" >/dev/null
    for n in $(seq 1 "$CLUSTER_NODES"); do
        "$chorus" cluster issue-cert --ca "$certs" --name "node$n" --out "$certs" >/dev/null
        {
            echo "node_id = $n"
            echo "data_dir = \"$work/cluster-data/node$n\""
            echo "[listen]"
            echo "tcp = \"$(cluster_tcp "$n")\""
            echo "http = \"$(cluster_http "$n")\""
            echo "peer = \"$(cluster_peer "$n")\""
            echo "[limits]"
            echo "max_connections_per_ip = 20000"
            echo "[log]"
            echo "level = \"warn\""
            echo "[cluster]"
            if [ "$n" = 1 ]; then echo "seeds = []"; else echo "seeds = [\"$(cluster_peer 1)\"]"; fi
            echo "replication_factor = $CLUSTER_NODES"
            echo "rebalance_delay_secs = 2"
            echo "[cluster.tls]"
            echo "ca_path = \"$certs/ca.pem\""
            echo "secret_path = \"$certs/cluster.secret\""
            echo "cert_path = \"$certs/node$n.pem\""
            echo "key_path = \"$certs/node$n-key.pem\""
        } >"$work/node$n.toml"
    done
    for n in $(seq 1 "$CLUSTER_NODES"); do
        CHORUS_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$chorus" serve --config "$work/node$n.toml" \
            >>"$work/node$n.out" 2>>"$work/node$n.err" &
        cluster_pids+=($!)
        wait_port "$(cluster_http "$n")" 120
    done
    wait_replicated
}

# Waits (at most 180 s) until every partition has a leader and a voter on
# every node, as node 1's cluster status reports it.
wait_replicated() {
    local token deadline=$((SECONDS + 180))
    token="$(curl -sf -H 'content-type: application/json' \
        -d "{\"account\":\"admin\",\"password\":\"$ADMIN_PASSWORD\",\"device_class\":\"pc\"}" \
        "http://$(cluster_http 1)/api/v1/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
    until curl -sf -H "authorization: Bearer $token" "http://$(cluster_http 1)/api/v1/admin/cluster" |
        python3 -c '
import json, sys
status, nodes = json.load(sys.stdin), int(sys.argv[1])
sys.exit(0 if all(p["leader"] is not None and len(p["voters"]) == nodes
                  for p in status["partitions"]) else 1)' "$CLUSTER_NODES"; do
        [ $SECONDS -lt $deadline ] || { echo "the cluster did not replicate every partition" >&2; return 1; }
        sleep 1
    done
}

stop_cluster() {
    local pid
    for pid in "${cluster_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${cluster_pids[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    cluster_pids=()
}

# Runs the four workloads against one target.
suite() {
    local target="$1" server="$2" label="$3"
    shift 3
    local common=(--target "$target" --server "$server" --server-pid "$server_pid" --label "$label" "$@")
    run idle "${common[@]}" --conns "$IDLE_CONNS" --hold 5s \
        --json "$results/$target-idle.json"
    run one-to-one "${common[@]}" --pairs "$PAIRS" --rate "$RATES" --duration "$STEP" \
        --max-p99-ms 200 --json "$results/$target-one-to-one.json"
    run group "${common[@]}" --members "$GROUP_MEMBERS" --rate "$GROUP_RATE" \
        --duration "$GROUP_DURATION" --json "$results/$target-group.json"
    run churn "${common[@]}" --pool "$CHURN_POOL" --rate "$CHURN_RATE" \
        --duration "$CHURN_DURATION" --mass "$MASS" --window "$MASS_WINDOW" \
        --json "$results/$target-churn.json"
}

for target in $TARGETS; do
    case "$target" in
    chorus)
        phase "chorus $chorus_rev"
        {
            echo "data_dir = \"$work/chorus-data\""
            echo "[listen]"
            echo "tcp = \"$CHORUS_TCP\""
            echo "http = \"$CHORUS_HTTP\""
            # Nodes that replicate have a peer port too.
            if grep -q '^peer *=' "$root/configs/single.toml"; then echo "peer = \"$CHORUS_PEER\""; fi
            # Up to ~19,000 load-generator connections, all from one address.
            echo "[limits]"
            echo "max_connections_per_ip = 20000"
            echo "[log]"
            echo "level = \"warn\""
        } >"$work/chorus.toml"
        chorus_args=(--http "$CHORUS_HTTP" --admin-password "$ADMIN_PASSWORD" --token-cache "$work/tokens.json")
        start_chorus
        run setup --target chorus --server "$CHORUS_TCP" "${chorus_args[@]}" --accounts "$accounts"
        # Creating users hashes passwords (argon2, 19 MiB each) and the
        # allocator keeps that memory: restart so that idle memory is measured
        # from a clean baseline. Users and tokens are on disk.
        stop_server
        start_chorus
        suite chorus "$CHORUS_TCP" "Chorus $chorus_rev (release, single node)" "${chorus_args[@]}"
        stop_server
        ;;
    ejabberd)
        phase "ejabberd $ejabberd_version"
        ej="$work/ejabberd"
        mkdir -p "$ej/spool" "$ej/logs"
        sed "s/port: 5222/port: ${XMPP##*:}/" "$here/ejabberd.yml" >"$ej/ejabberd.yml"
        cp "$here/ejabberdctl.cfg" "$ej/ejabberdctl.cfg"
        cp /etc/ejabberd/inetrc "$ej/inetrc" 2>/dev/null || true
        chown -R ejabberd:ejabberd "$ej"
        start_ejabberd
        run setup --target ejabberd --server "$XMPP" --accounts "$accounts"
        # Restarted for the same clean baseline as Chorus.
        stop_ejabberd
        start_ejabberd
        suite ejabberd "$XMPP" "ejabberd $ejabberd_version (Debian 12, mnesia, no TLS, no MAM)"
        stop_ejabberd
        ;;
    nats)
        phase "nats-server $nats_version"
        sed "s/127.0.0.1:4222/$NATS/" "$here/nats.conf" >"$work/nats.conf"
        nats-server -c "$work/nats.conf" >"$work/nats.out" 2>&1 &
        server_pid=$!
        wait_port "$NATS" 60
        suite nats "$NATS" "nats-server $nats_version (Debian 12, default config, no JetStream)"
        stop_server
        ;;
    chorus-cluster)
        phase "chorus $chorus_rev, $CLUSTER_NODES nodes"
        start_cluster
        servers="$(for n in $(seq 1 "$CLUSTER_NODES"); do cluster_tcp "$n"; done | paste -sd,)"
        pids="$(IFS=,; echo "${cluster_pids[*]}")"
        cluster_args=(--target chorus --server "$servers" --http "$(cluster_http 1)"
            --admin-password "$ADMIN_PASSWORD" --token-cache "$work/cluster-tokens.json")
        run setup "${cluster_args[@]}" --accounts $((2 * PAIRS))
        run one-to-one "${cluster_args[@]}" --server-pid "$pids" \
            --label "Chorus $chorus_rev (release, $CLUSTER_NODES nodes, replication factor $CLUSTER_NODES)" \
            --pairs "$PAIRS" --rate "$RATES" --duration "$STEP" --max-p99-ms 200 \
            --json "$results/cluster/chorus-one-to-one.json"
        stop_cluster
        ;;
    *)
        echo "unknown target $target" >&2
        exit 2
        ;;
    esac
done

phase report
run report --results "$results" --cluster-results "$results/cluster" --out "$OUT" --notes "$here/NOTES.md" \
    --fsync-probe "$work" --command "bash benches/compare/run.sh"
