#!/usr/bin/env bash
# Run the fleetcache demo against real Redis: scripts/demo.sh [demo options]
# Sets up .venv and a Redis binary first (see scripts/_bootstrap.sh).
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
if [ "$#" -eq 0 ]; then
    set -- --compare
fi
exec .venv/bin/python -m fleetcache demo "$@"
