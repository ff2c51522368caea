#!/usr/bin/env bash
# The demo: .venv + local RabbitMQ + the example topology + routed workers and tasks.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/venv.sh"
"$REPO_ROOT/scripts/broker.sh" >/dev/null

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
echo "Management UI: $(management_url) (guest/guest)"
