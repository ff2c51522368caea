#!/usr/bin/env bash
# The whole test suite: .venv + local RabbitMQ, Redis and PostgreSQL + ruff + mypy + pytest.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k topology -x
# AMQPQ_SKIP_LINT=1 skips ruff and mypy (quick pytest-only runs).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/venv.sh"
"$REPO_ROOT/scripts/broker.sh" >/dev/null
"$REPO_ROOT/scripts/services.sh"

VENV_BIN="$REPO_ROOT/.venv/bin"
failed=()

if [[ -z "${AMQPQ_SKIP_LINT:-}" ]]; then
    log "ruff check"
    "$VENV_BIN/ruff" check . || failed+=("ruff check")
    log "mypy (strict, see pyproject.toml)"
    "$VENV_BIN/mypy" || failed+=("mypy")
fi

log "pytest $*"
set +e
"$VENV_BIN/python" -m pytest "$@"
rc=$?
set -e
case "$rc" in
    0) ;;
    5) failed+=("pytest (no tests were collected)") ;;
    *) failed+=("pytest (exit code $rc)") ;;
esac

if ((${#failed[@]})); then
    printf '%sFAILED:%s %s\n' "$_c_red" "$_c_off" "$(IFS=','; echo "${failed[*]}" | sed 's/,/, /g')" >&2
    exit 1
fi
log "all checks passed"
