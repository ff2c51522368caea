#!/usr/bin/env bash
# Bring up a local RabbitMQ with the management plugin for development and tests.
# Idempotent; in order of preference:
#   1. something already answers AMQP on 127.0.0.1:5672 -> reuse it (enabling the
#      management plugin when the API does not answer and rabbitmq-plugins is here);
#   2. a Docker engine answers -> docker compose -f deploy/rabbitmq/compose.yaml up -d;
#   3. Debian/Ubuntu -> apt-get install rabbitmq-server, enable management, start it.
# Then waits (AMQPQ_BROKER_TIMEOUT, default 90 s) until AMQP and GET /api/overview answer.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COMPOSE_FILE="$REPO_ROOT/deploy/rabbitmq/compose.yaml"

docker_engine_answers() {
    have docker && timeout 15 docker info >/dev/null 2>&1
}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$COMPOSE_FILE" "$@"
    elif have docker-compose; then
        docker-compose -f "$COMPOSE_FILE" "$@"
    else
        return 127
    fi
}

enable_management_online() {
    log "the management API does not answer on $(management_url); enabling rabbitmq_management"
    as_root rabbitmq-plugins enable rabbitmq_management >&2 \
        || die "rabbitmq-plugins enable rabbitmq_management failed"
}

reuse_running() {
    log "RabbitMQ already answers AMQP on $AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT; reusing it"
    if ! management_ok; then
        # A broker that has just started may need a moment before the API answers.
        local i
        for i in 1 2 3 4 5; do
            sleep 1
            management_ok && return 0
        done
        if have rabbitmq-plugins; then
            enable_management_online
        else
            die "the broker on $AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT has no management API on \
$(management_url) and rabbitmq-plugins is not installed here: enable the rabbitmq_management plugin on it"
        fi
    fi
}

start_with_docker() {
    log "Docker engine found: docker compose -f deploy/rabbitmq/compose.yaml up -d"
    compose up -d >&2
}

ensure_resolvable_nodename() {
    # The package names the node rabbit@<short hostname>; when that name does not resolve
    # (common in containers) the node cannot start. rabbit@localhost always works.
    local envconf=/etc/rabbitmq/rabbitmq-env.conf
    getent hosts "$(hostname -s)" >/dev/null 2>&1 && return 0
    if ! grep -qs '^ *NODENAME=' "$envconf"; then
        warn "hostname $(hostname -s) does not resolve; naming the node rabbit@localhost in $envconf"
        echo 'NODENAME=rabbit@localhost' | as_root tee -a "$envconf" >/dev/null
    fi
}

start_with_package() {
    if ! dpkg -s rabbitmq-server >/dev/null 2>&1 || ! have rabbitmq-plugins; then
        apt_install rabbitmq-server
        # The package's maintainer scripts may have started it already.
        amqp_ok && { reuse_running; return; }
    fi
    ensure_resolvable_nodename
    log "enabling the management plugin"
    as_root rabbitmq-plugins --offline enable rabbitmq_management >&2 \
        || die "rabbitmq-plugins --offline enable rabbitmq_management failed"
    if [[ -d /run/systemd/system ]] && have systemctl; then
        log "systemctl start rabbitmq-server"
        as_root systemctl start rabbitmq-server || die "systemctl start rabbitmq-server failed \
(see: journalctl -u rabbitmq-server)"
    else
        log "rabbitmq-server -detached (no systemd here)"
        as_root rabbitmq-server -detached >&2 || die "rabbitmq-server -detached failed \
(see /var/log/rabbitmq/)"
    fi
}

main() {
    if amqp_ok; then
        reuse_running
    elif tcp_open "$AMQPQ_BROKER_HOST" "$AMQPQ_AMQP_PORT"; then
        die "port $AMQPQ_AMQP_PORT on $AMQPQ_BROKER_HOST is taken by something that does not speak AMQP"
    elif docker_engine_answers && compose version >/dev/null 2>&1; then
        start_with_docker
    elif is_debian_like; then
        docker_engine_answers && warn "Docker answers but neither 'docker compose' nor docker-compose \
is installed; using the distribution's rabbitmq-server instead"
        start_with_package
    else
        die "no RabbitMQ on $AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT, no Docker engine, and not Debian/Ubuntu: \
start RabbitMQ 3.10+ with the management plugin yourself (see deploy/rabbitmq/README.md)"
    fi
    log "waiting for AMQP on $AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT and $(management_url)/api/overview"
    wait_for_broker || exit 1
    log "RabbitMQ is up: amqp://guest:guest@$AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT/"
    echo "Management UI: $(management_url) (guest/guest)"
}

main "$@"
