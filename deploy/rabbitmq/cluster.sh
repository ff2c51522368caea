#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster without Docker, from the distribution's package.
#
#   cluster.sh up       start rmq1..rmq3@localhost and cluster them (idempotent)
#   cluster.sh start NAME...  start stopped (e.g. killed) members again; they rejoin
#   cluster.sh down     stop the three nodes (data is kept)
#   cluster.sh status   node processes and rabbitmqctl cluster_status
#   cluster.sh clean    down, then delete $AMQPQ_CLUSTER_DIR
#
# Ports: AMQP 5681-5683, management 15681-15683, Erlang distribution 25681-25683; all on
# 127.0.0.1, guest allowed. Data, logs and the shared Erlang cookie live under
# ${AMQPQ_CLUSTER_DIR:-/tmp/amqpq-cluster}. The broker on 5672 is never touched.
# Client URL: AMQPQ_URL=amqp://guest:guest@127.0.0.1:5681/,amqp://guest:guest@127.0.0.1:5682/,amqp://guest:guest@127.0.0.1:5683/
# and AMQPQ_MANAGEMENT_URL=http://127.0.0.1:15681 (not derivable from a non-standard port).
# A second cluster beside this one (the test suite's) sets AMQPQ_CLUSTER_PORT_BASE (5680:
# ports BASE+1..3, BASE+10001..3, BASE+20001..3) and AMQPQ_CLUSTER_NODE_PREFIX (rmq).
set -euo pipefail

AMQPQ_NODE_DIR="${AMQPQ_CLUSTER_DIR:-/tmp/amqpq-cluster}"
export AMQPQ_NODE_DIR
# shellcheck source=deploy/rabbitmq/node.sh
. "$(dirname "${BASH_SOURCE[0]}")/node.sh"

PREFIX="${AMQPQ_CLUSTER_NODE_PREFIX:-rmq}"
NODES=("${PREFIX}1" "${PREFIX}2" "${PREFIX}3")
BASE_PORT="${AMQPQ_CLUSTER_PORT_BASE:-5680}"
[[ "$PREFIX" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || _ndie "AMQPQ_CLUSTER_NODE_PREFIX must be a plain name (got '$PREFIX')"
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && ((BASE_PORT + 20003 < 65536)) || _ndie "AMQPQ_CLUSTER_PORT_BASE must be a port number below 45533 (got '$BASE_PORT')"

version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

cluster_conf() {
    echo "cluster_partition_handling = pause_minority"
    # RabbitMQ 3.13+ reads a node-wide default queue type; older nodes get it per vhost below.
    if version_ge "$(rabbitmq_version)" 3.13; then
        echo "default_queue_type = quorum"
    fi
}

# members NODE: the running nodes NODE sees in its cluster, one per line.
members() {
    ctl "$1" eval 'lists:foreach(fun(N) -> io:format("~s~n", [N]) end, rabbit_nodes:all_running()).' \
        2>/dev/null | grep '@' || true
}

up() {
    local i name pids=() failed=0
    AMQPQ_NODE_EXTRA_CONF="$(cluster_conf)"
    export AMQPQ_NODE_EXTRA_CONF
    # Boot in parallel: a restarted cluster member waits for its peers to come back.
    for i in 1 2 3; do
        name="${NODES[$((i - 1))]}"
        node_start "$name" $((BASE_PORT + i)) $((BASE_PORT + 10000 + i)) $((BASE_PORT + 20000 + i)) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || failed=1; done
    ((failed == 0)) || _ndie "a node did not start (logs under $AMQPQ_NODE_DIR/${PREFIX}*/log)"

    local first="${NODES[0]}"
    for name in "${NODES[1]}" "${NODES[2]}"; do
        if members "$name" | grep -qx "$first@localhost"; then
            _nlog "$name@localhost already in the cluster"
            continue
        fi
        _nlog "joining $name@localhost to $first@localhost"
        ctl "$name" stop_app
        ctl "$name" join_cluster "$first@localhost"
        ctl "$name" start_app
        ctl "$name" await_startup --timeout 60
    done

    if ! version_ge "$(rabbitmq_version)" 3.13 && [[ ! -e "$AMQPQ_NODE_DIR/.default-vhost-quorum" ]]; then
        # The default vhost of a brand-new cluster is recreated with quorum as its default
        # queue type (before 3.13 that can only be set when a vhost is created).
        if [[ "$(ctl "$first" list_queues -p / name 2>/dev/null | wc -l)" -eq 0 ]]; then
            _nlog "default vhost /: default queue type quorum"
            ctl "$first" delete_vhost /
            ctl "$first" add_vhost / --default-queue-type quorum
            ctl "$first" set_permissions -p / guest '.*' '.*' '.*'
        fi
        touch "$AMQPQ_NODE_DIR/.default-vhost-quorum"
    fi

    _nlog "cluster running: $(members "$first" | tr '\n' ' ')"
    echo "AMQPQ_URL=amqp://guest:guest@127.0.0.1:$((BASE_PORT + 1))/,amqp://guest:guest@127.0.0.1:$((BASE_PORT + 2))/,amqp://guest:guest@127.0.0.1:$((BASE_PORT + 3))/"
    echo "AMQPQ_MANAGEMENT_URL=http://127.0.0.1:$((BASE_PORT + 10001))"
    echo "Management UI: http://127.0.0.1:$((BASE_PORT + 10001)) (guest/guest)"
}

start() {
    local name i
    (($#)) || _ndie "start: name the nodes to start (${NODES[*]})"
    AMQPQ_NODE_EXTRA_CONF="$(cluster_conf)"
    export AMQPQ_NODE_EXTRA_CONF
    for name in "$@"; do
        for i in 1 2 3; do
            if [[ "${NODES[$((i - 1))]}" == "$name" ]]; then
                # A member that was in the cluster rejoins it by itself when it boots.
                node_start "$name" $((BASE_PORT + i)) $((BASE_PORT + 10000 + i)) $((BASE_PORT + 20000 + i))
                continue 2
            fi
        done
        _ndie "$name is not a node of this cluster (${NODES[*]})"
    done
}

down() {
    local name pids=()
    # Stop followers first; the last node to stop is the first that may start alone.
    for name in "${NODES[2]}" "${NODES[1]}"; do node_stop "$name" & pids+=($!); done
    for name in "${pids[@]}"; do wait "$name" || true; done
    node_stop "${NODES[0]}"
}

status() {
    local name rc=0
    for name in "${NODES[@]}"; do node_status "$name" || rc=3; done
    if node_running "${NODES[0]}"; then ctl "${NODES[0]}" cluster_status || rc=3; fi
    return "$rc"
}

clean() {
    down
    if [[ -e "$AMQPQ_NODE_DIR/.amqpq-nodes" ]]; then
        _nlog "deleting $AMQPQ_NODE_DIR"
        rm -rf -- "$AMQPQ_NODE_DIR"
    fi
}

case "${1:-}" in
    up) up ;;
    start) shift; start "$@" ;;
    down) down ;;
    status) status ;;
    clean) clean ;;
    *) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
