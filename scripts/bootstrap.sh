#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies. Sourced by scripts/serve and scripts/test.
# Usage: bootstrap_venv <lock file>
bootstrap_venv() {
    local lock="$1"
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    # Reinstall only when the lock file changed since the last install.
    local stamp=".venv/.installed-$(basename "$lock")-$(sha256sum "$lock" pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
        .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
        rm -f .venv/.installed-"$(basename "$lock")"-*
        touch "$stamp"
    fi
}
