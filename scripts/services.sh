#!/usr/bin/env bash
# Bring up the result stores the tests use: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 with a database "test" that local TCP connections reach without a password,
# and the chromium the dashboard's browser tests drive (/usr/bin/chromium).
# Idempotent: a store that already answers is reused as it is (never stopped or
# reconfigured). Otherwise, on Debian/Ubuntu: apt-get install redis-server / postgresql,
# start them (systemd when present, else directly), create the database and trust auth.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT="${AMQPQ_REDIS_PORT:-6379}"
PG_PORT="${AMQPQ_POSTGRES_PORT:-5432}"
HOST=127.0.0.1

wait_port() {
    local what="$1" port="$2" i
    for i in $(seq 1 60); do
        tcp_open "$HOST" "$port" && return 0
        sleep 1
    done
    die "$what does not answer on $HOST:$port after 60 s"
}

start_service() {
    # start_service NAME COMMAND...: systemd when it runs here, else the given command.
    local name="$1"
    shift
    if [[ -d /run/systemd/system ]] && have systemctl; then
        log "systemctl start $name"
        as_root systemctl start "$name" || die "systemctl start $name failed (journalctl -u $name)"
    else
        log "starting $name without systemd"
        "$@" || die "starting $name failed"
    fi
}

ensure_redis() {
    if tcp_open "$HOST" "$REDIS_PORT"; then
        log "Redis already answers on $HOST:$REDIS_PORT; reusing it"
        return
    fi
    have redis-server || apt_install redis-server
    tcp_open "$HOST" "$REDIS_PORT" && return  # the package may have started it
    start_service redis-server \
        as_root redis-server --port "$REDIS_PORT" --bind "$HOST" --daemonize yes --save ''
    wait_port Redis "$REDIS_PORT"
}

pg_as_postgres() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -n -u postgres "$@"
    fi
}

ensure_postgres() {
    if ! tcp_open "$HOST" "$PG_PORT"; then
        have pg_ctlcluster || apt_install postgresql
        if ! tcp_open "$HOST" "$PG_PORT"; then
            local version
            version="$(ls /etc/postgresql | sort -V | tail -1)"
            [[ -n "$version" ]] || die "postgresql is installed but has no cluster in /etc/postgresql"
            local hba="/etc/postgresql/$version/main/pg_hba.conf"
            # Trust local TCP for the tests (a fresh cluster of ours only: an existing
            # one that already answers is never reconfigured).
            if ! as_root grep -qs '^host *all *all *127.0.0.1/32 *trust' "$hba"; then
                log "trust auth for 127.0.0.1 in $hba"
                as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
            fi
            start_service postgresql as_root pg_ctlcluster "$version" main start
            wait_port PostgreSQL "$PG_PORT"
        fi
    else
        log "PostgreSQL already answers on $HOST:$PG_PORT; reusing it"
    fi
    local py
    py="$(_probe_python)"
    if [[ -n "$py" ]] && "$py" -c "import psycopg; psycopg.connect('postgresql://postgres@$HOST:$PG_PORT/test', connect_timeout=5).close()" 2>/dev/null; then
        return
    fi
    log "creating database test"
    pg_as_postgres psql -p "$PG_PORT" -qc 'CREATE DATABASE test' >&2 \
        || warn "could not create database test (does it exist already?)"
}

ensure_chromium() {
    # The dashboard's browser tests drive Debian's chromium through Playwright (never a
    # downloaded browser): install it when it is missing.
    if [[ -x "${AMQPQ_CHROMIUM:-/usr/bin/chromium}" ]]; then
        return
    fi
    apt_install chromium
}

main() {
    ensure_redis
    ensure_postgres
    log "result stores are up: redis://$HOST:$REDIS_PORT/0 and postgresql://postgres@$HOST:$PG_PORT/test"
    ensure_chromium
}

main "$@"
