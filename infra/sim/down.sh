#!/usr/bin/env bash
# Stop the simulated cluster and MLflow server that infra/sim/up.sh started (the fake worker
# nodes are in the head's process group): infra/local/down.sh on the simulation's state folder.
#
#   infra/sim/down.sh            stop; keep the MLflow DB, artifacts and logs
#   infra/sim/down.sh --purge    stop, then delete the state folder's contents too
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export AUDIOSWEEP_STATE="${AUDIOSWEEP_STATE:-$repo/.local/sim}"
exec "$repo/infra/local/down.sh" "$@"
