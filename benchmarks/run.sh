#!/usr/bin/env bash
# Run the benchmarks: amqpq vs Celery vs Dramatiq vs raw aio-pika on the local RabbitMQ.
#   benchmarks/run.sh [--n 10000] [--runs 3] [--only WORKLOAD,...] [--systems amqpq,celery,dramatiq,raw]
#                     [--json out.json] [--markdown]
# Celery and Dramatiq live in benchmarks/.venv (created here if missing), never in the
# project's own venv or dependencies.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-python3}"

stamp="$venv/.installed"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$here/requirements.txt" -nt "$stamp" || "$root/pyproject.toml" -nt "$stamp" ]]; then
    "$venv/bin/pip" install --quiet --upgrade pip
    # The pins are the whole resolved set; amqpq itself comes from this work tree.
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt" -e "$root[redis,postgres,dashboard]"
    touch "$stamp"
fi

cd "$root"
# amqpq is installed editable (its sources, not a wheel): compile it once, as pip does for
# every installed package, or each worker start compiles it again where
# PYTHONDONTWRITEBYTECODE is set (~0.06-0.1 s of the cold start, measured here).
"$venv/bin/python" -m compileall -q "$root/amqpq" "$here" >/dev/null
export BENCH_COMMAND="benchmarks/run.sh${*:+ $*}"
exec "$venv/bin/python" -m benchmarks "$@"
