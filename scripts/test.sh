#!/usr/bin/env bash
# Run the checks and the test suite: scripts/test.sh [pytest options]
# Sets up .venv and a Redis binary first (see scripts/_bootstrap.sh). The Redis provider
# comes from FLEETCACHE_REDIS (containers | local | auto, the default).
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
if [ -f scripts/check_all.py ]; then
    .venv/bin/python scripts/check_all.py
fi
exec .venv/bin/python -m pytest "$@"
