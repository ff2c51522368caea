#!/usr/bin/env bash
# The demo: .venv + local RabbitMQ + the example topology + routed workers and tasks,
# all in a vhost of its own (AMQPQ_DEMO_VHOST, default amqpq-demo).
#   ./scripts/demo.sh           run it (idempotent)
#   ./scripts/demo.sh --clean   delete the demo's vhost and everything in it
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DEMO_VHOST="${AMQPQ_DEMO_VHOST:-amqpq-demo}"
clean=no
for arg in "$@"; do
    case "$arg" in
        --clean) clean=yes ;;
        -h | --help)
            sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown option $arg (use --clean or --help)" ;;
    esac
done

# vhost_api METHOD: PUT or DELETE the demo's vhost (and guest's permissions on it).
vhost_api() {
    "$REPO_ROOT/.venv/bin/python" - "$(management_url)" "$DEMO_VHOST" "$1" <<'PY'
import sys
from urllib.parse import quote

import httpx

base, vhost, method = sys.argv[1], quote(sys.argv[2], safe=""), sys.argv[3]
with httpx.Client(base_url=base, auth=("guest", "guest"), timeout=10) as api:
    if method == "DELETE":
        done = api.delete(f"/api/vhosts/{vhost}")
        sys.exit(0 if done.status_code in (204, 404) else f"deleting the vhost: HTTP {done.status_code}")
    api.put(f"/api/vhosts/{vhost}", json={}).raise_for_status()
    api.put(
        f"/api/permissions/{vhost}/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
    ).raise_for_status()
PY
}

"$REPO_ROOT/scripts/venv.sh"
"$REPO_ROOT/scripts/broker.sh" >/dev/null

if [[ "$clean" == yes ]]; then
    vhost_api DELETE || die "could not delete vhost $DEMO_VHOST"
    log "deleted vhost $DEMO_VHOST and everything the demo declared in it"
    exit 0
fi

vhost_api PUT || die "could not create vhost $DEMO_VHOST through $(management_url)"
export AMQPQ_URL="amqp://guest:guest@$AMQPQ_BROKER_HOST:$AMQPQ_AMQP_PORT/$DEMO_VHOST"
log "the demo runs in vhost $DEMO_VHOST (./scripts/demo.sh --clean deletes it)"

TOPOLOGY="$REPO_ROOT/examples/amqpq.yaml"
AMQPQ="$REPO_ROOT/.venv/bin/amqpq"
[[ -f "$TOPOLOGY" ]] || die "examples/amqpq.yaml is missing"
[[ -x "$AMQPQ" ]] || die ".venv/bin/amqpq is missing: run AMQPQ_FORCE_INSTALL=1 ./scripts/venv.sh"

for step in validate plan apply; do
    log "amqpq topology $step -f examples/amqpq.yaml"
    "$AMQPQ" topology "$step" -f "$TOPOLOGY" || die "amqpq topology $step failed"
done

if [[ -f "$REPO_ROOT/examples/demo.py" ]]; then
    log "python examples/demo.py"
    "$REPO_ROOT/.venv/bin/python" "$REPO_ROOT/examples/demo.py" || die "examples/demo.py failed"
fi

echo
echo "Management UI: $(management_url) (guest/guest), vhost $DEMO_VHOST"
echo "Remove the demo's objects: ./scripts/demo.sh --clean"
