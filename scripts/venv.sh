#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install amqpq with its dev extras into it.
# Idempotent: the install is skipped while pyproject.toml is unchanged since the last one.
#   PYTHON=/path/to/python3.x ./scripts/venv.sh   picks the interpreter
#   AMQPQ_FORCE_INSTALL=1 ./scripts/venv.sh        reinstalls anyway
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.amqpq-install-stamp"

py_ok() { # py_ok INTERPRETER: true when it runs and is >= 3.11
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local c
    for c in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if have "$c" && py_ok "$(command -v "$c")"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

stamp_value() {
    # What the install depends on: the project metadata and the interpreter.
    {
        cat "$REPO_ROOT/pyproject.toml"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

create_venv() {
    local py
    if ! py="$(find_python)"; then
        is_debian_like || die "Python >= 3.11 not found; install it (or set PYTHON=/path/to/python3.11+)"
        apt_install python3 python3-venv
        py="$(find_python)" || { apt_install python3.11 python3.11-venv; py="$(find_python)"; } \
            || die "Python >= 3.11 not found after installing python3; set PYTHON=/path/to/python3.11+"
    fi
    log "creating .venv with $py ($("$py" -c 'import platform; print(platform.python_version())'))"
    rm -rf "$VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        is_debian_like || die "'$py -m venv' failed; install your distribution's venv package"
        # Debian splits venv/ensurepip out of the interpreter package.
        local ver
        ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install python3-venv || true
        "$py" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install "python$ver-venv"; "$py" -m venv "$VENV"; } \
            || die "'$py -m venv' still fails after installing python3-venv"
    fi
}

if [[ -x "$VENV/bin/python" ]] && py_ok "$VENV/bin/python"; then
    :
else
    [[ -e "$VENV" ]] && warn ".venv is missing a working Python >= 3.11; recreating it"
    create_venv
fi

want="$(stamp_value)"
if [[ -z "${AMQPQ_FORCE_INSTALL:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
    && "$VENV/bin/python" -c 'import amqpq' >/dev/null 2>&1; then
    log ".venv is up to date (pyproject.toml unchanged since the last install)"
    exit 0
fi

log "installing amqpq[dev] into .venv (editable)"
rm -f "$STAMP"
cd "$REPO_ROOT"
# pip's and the build backend's chatter goes to a log that is shown only on failure.
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]' \
    >"$VENV/pip-install.log" 2>&1; then
    tail -n 40 "$VENV/pip-install.log" >&2
    die "pip install -e '.[dev]' failed (full log: .venv/pip-install.log)"
fi
echo "$want" >"$STAMP"
log ".venv ready: $VENV"
