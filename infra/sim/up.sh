#!/usr/bin/env bash
# Start a simulated autoscaling Ray cluster on this machine, shaped like infra/cluster.yaml
# (a head with no CPU, worker nodes of infra/sim/cluster.yaml's type scaling from zero), plus
# an MLflow server; all on 127.0.0.1, all state under <repo>/.local/sim.
#
#   infra/sim/up.sh                              start (or find running), print `export` lines
#   eval "$(infra/sim/up.sh --exports-only)"     the same, silently, into the current shell
#   infra/sim/down.sh [--purge]                  stop exactly what this started
#
# Ray's fake multi-node provider starts each worker node as a local raylet when queued work
# asks for resources, and stops it after the config's idle timeout. Everything else (ports,
# token, waiting, exports, stopping by process group) is infra/local/up.sh's, with these
# defaults, so the simulation can run next to `make up`:
#   AUDIOSWEEP_STATE=<repo>/.local/sim  AUDIOSWEEP_RAY_PORT=6390  AUDIOSWEEP_DASHBOARD_PORT=8275
#   AUDIOSWEEP_MLFLOW_PORT=5010  AUDIOSWEEP_SIM_CONFIG=infra/sim/cluster.yaml
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

for arg in "$@"; do
    case "$arg" in
    -h | --help)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    esac
done

export AUDIOSWEEP_STATE="${AUDIOSWEEP_STATE:-$repo/.local/sim}"
export AUDIOSWEEP_RAY_PORT="${AUDIOSWEEP_RAY_PORT:-6390}"
export AUDIOSWEEP_DASHBOARD_PORT="${AUDIOSWEEP_DASHBOARD_PORT:-8275}"
export AUDIOSWEEP_MLFLOW_PORT="${AUDIOSWEEP_MLFLOW_PORT:-5010}"
export AUDIOSWEEP_SIM_CONFIG="${AUDIOSWEEP_SIM_CONFIG:-$here/cluster.yaml}"
# The head runs nothing, as on the real cluster: trials wait for the autoscaler's workers.
export AUDIOSWEEP_NUM_CPUS=0
export AUDIOSWEEP_NUM_GPUS=0
export AUDIOSWEEP_DOWN_HINT=infra/sim/down.sh
"$repo/infra/local/up.sh" "$@"
if [[ " $* " != *" --exports-only "* && " $* " != *" -q "* && " $* " != *" --quiet "* ]]; then
    printf '%s\n' "Worker nodes start when trials queue and stop when idle; watch them with" \
        "  ray status --address=127.0.0.1:$AUDIOSWEEP_RAY_PORT   (after loading the exports)" >&2
fi
