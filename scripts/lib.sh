# shellcheck shell=bash
# Shared helpers for the scripts in this directory. Source it; do not run it.
#
#   AMQPQ_BROKER_HOST   host checked for the broker (default 127.0.0.1)
#   AMQPQ_AMQP_PORT     AMQP port (default 5672)
#   AMQPQ_MGMT_PORT     management HTTP port (default 15672)
#   AMQPQ_BROKER_TIMEOUT  seconds to wait for the broker (default 90)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

AMQPQ_BROKER_HOST="${AMQPQ_BROKER_HOST:-127.0.0.1}"
AMQPQ_AMQP_PORT="${AMQPQ_AMQP_PORT:-5672}"
AMQPQ_MGMT_PORT="${AMQPQ_MGMT_PORT:-15672}"
AMQPQ_BROKER_TIMEOUT="${AMQPQ_BROKER_TIMEOUT:-90}"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_yellow=$'\e[33m' _c_off=$'\e[0m'
else
    _c_bold='' _c_red='' _c_yellow='' _c_off=''
fi

log() { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$_c_red" "$_c_off" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Run a command as root: directly when we are root, else through sudo (never prompting
# when there is no terminal, e.g. in CI).
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif have sudo; then
        if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
    else
        die "need root for: $* (no sudo available)"
    fi
}

is_debian_like() {
    [[ -r /etc/os-release ]] || return 1
    # shellcheck disable=SC1091
    local id id_like
    id="$(. /etc/os-release && echo "${ID:-}")"
    id_like="$(. /etc/os-release && echo "${ID_LIKE:-}")"
    [[ "$id" == debian || "$id" == ubuntu || " $id_like " == *" debian "* ]] && have apt-get
}

_apt_updated=0
apt_install() {
    is_debian_like || die "cannot install $* automatically: not a Debian/Ubuntu system"
    if [[ "$_apt_updated" -eq 0 ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
        _apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
        || die "apt-get install $* failed"
}

# A python interpreter for the small connectivity checks below (any python3 will do).
_probe_python() {
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        echo "$REPO_ROOT/.venv/bin/python"
    elif have python3; then
        command -v python3
    else
        echo ""
    fi
}

# tcp_open HOST PORT: true when something accepts a TCP connection there.
tcp_open() {
    local host="$1" port="$2" py
    py="$(_probe_python)"
    if [[ -n "$py" ]]; then
        "$py" - "$host" "$port" <<'PY' 2>/dev/null
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
    else
        timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
    fi
}

# amqp_answers HOST PORT: true when an AMQP 0-9-1 broker answers the protocol header.
amqp_answers() {
    local host="$1" port="$2" py
    py="$(_probe_python)"
    [[ -n "$py" ]] || { tcp_open "$host" "$port"; return; }
    "$py" - "$host" "$port" <<'PY' 2>/dev/null
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.settimeout(3)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        frame = s.recv(7)
except OSError:
    sys.exit(1)
# connection.start is a method frame (type 1) on channel 0
sys.exit(0 if len(frame) == 7 and frame[0] == 1 else 1)
PY
}

# http_ok URL [USER:PASS]: true when GET URL answers 2xx.
http_ok() {
    local url="$1" auth="${2:-}" py
    if have curl; then
        if [[ -n "$auth" ]]; then
            curl -fsS -o /dev/null --max-time 3 -u "$auth" "$url" 2>/dev/null
        else
            curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null
        fi
        return
    fi
    py="$(_probe_python)"
    [[ -n "$py" ]] || die "neither curl nor python3 is available to check $url"
    "$py" - "$url" "$auth" <<'PY' 2>/dev/null
import base64, sys, urllib.request
url, auth = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url)
if auth:
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=3) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except Exception:
    sys.exit(1)
PY
}

management_url() { echo "http://$AMQPQ_BROKER_HOST:$AMQPQ_MGMT_PORT"; }

management_ok() { http_ok "$(management_url)/api/overview" guest:guest; }

amqp_ok() { amqp_answers "$AMQPQ_BROKER_HOST" "$AMQPQ_AMQP_PORT"; }

# wait_for_broker [TIMEOUT]: until both AMQP and the management API answer.
wait_for_broker() {
    local timeout="${1:-$AMQPQ_BROKER_TIMEOUT}" start now amqp=no mgmt=no
    start="$(date +%s)"
    while :; do
        amqp_ok && amqp=yes || amqp=no
        if [[ "$amqp" == yes ]]; then management_ok && mgmt=yes || mgmt=no; fi
        [[ "$amqp" == yes && "$mgmt" == yes ]] && return 0
        now="$(date +%s)"
        if ((now - start >= timeout)); then
            printf '%serror:%s RabbitMQ did not come up within %ss: AMQP on %s:%s answers: %s; ' \
                "$_c_red" "$_c_off" "$timeout" "$AMQPQ_BROKER_HOST" "$AMQPQ_AMQP_PORT" "$amqp" >&2
            printf 'management API %s/api/overview (guest/guest) answers: %s\n' "$(management_url)" "$mgmt" >&2
            return 1
        fi
        sleep 1
    done
}
