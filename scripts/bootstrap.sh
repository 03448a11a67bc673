#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies. Sourced by scripts/serve and scripts/test.
# Usage: bootstrap_venv <lock file>
#
# The project itself is not pip-installed: every entry point (python -m jollyjet,
# gunicorn app:app, celery -A tasks, pytest) runs from the repository root, which
# is on sys.path. That keeps the install to hash-checked wheels from the lock file,
# with no build step that would need setuptools/wheel versions of its own.
bootstrap_venv() {
    local lock="$1"
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    # Reinstall only when the lock file changed since the last install.
    local stamp=".venv/.installed-$(basename "$lock")-$(sha256sum "$lock" | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
        rm -f .venv/.installed-"$(basename "$lock")"-*
        touch "$stamp"
    fi
}
