# Shared settings and helpers for up.sh / down.sh (sourced, not executed).
#
# Every setting can be changed through the environment:
#   AUDIOSWEEP_STATE            state folder (default <repo>/.local/infra): Ray temp dir, logs,
#                               pid files, auth token, MLflow SQLite DB and artifacts
#   AUDIOSWEEP_RAY_PORT         Ray GCS port (default 6380)
#   AUDIOSWEEP_RAY_CLIENT_PORT  Ray client server port (default: GCS port + 1)
#   AUDIOSWEEP_DASHBOARD_PORT   Ray dashboard / job submission port (default 8265)
#   AUDIOSWEEP_MLFLOW_PORT      MLflow tracking server port (default 5000)
#   AUDIOSWEEP_MLFLOW_WORKERS   MLflow server worker processes (default 1: SQLite backend)
#   AUDIOSWEEP_RAY_AGENT_GRPC_PORT, AUDIOSWEEP_RAY_RUNTIME_ENV_PORT, AUDIOSWEEP_RAY_METRICS_PORT
#                               Ray's agent and metrics ports (default: Ray's fixed ones)
#   AUDIOSWEEP_NUM_CPUS         CPUs the Ray head offers (default: all cores)
#   AUDIOSWEEP_NUM_GPUS         GPUs the Ray head offers (default: Ray's detection)
#   AUDIOSWEEP_UP_TIMEOUT       seconds to wait for both services to be healthy (default 180)
#   AUDIOSWEEP_STOP_GRACE       seconds between SIGTERM and SIGKILL in down.sh (default 20)
#   AUDIOSWEEP_VENV_BIN         where `ray`, `mlflow` and `python` live (default <repo>/.venv/bin)
#   AUDIOSWEEP_RAY_LOOPBACK     1 (default): every Ray port on 127.0.0.1, single-node head;
#                               0: Ray's usual node IP (internal gRPC ports on all interfaces,
#                               other machines may join), dashboard/job server still on loopback

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${AUDIOSWEEP_STATE:-$REPO_ROOT/.local/infra}"
VENV_BIN="${AUDIOSWEEP_VENV_BIN:-$REPO_ROOT/.venv/bin}"

RUN_DIR="$STATE/run"
LOG_DIR="$STATE/logs"
TOKEN_FILE="$STATE/ray_auth_token"
ENV_FILE="$STATE/env.sh"
# The library falls back to this file when MLFLOW_TRACKING_URI is unset.
URI_FILE="$STATE/mlflow_uri"
MLFLOW_DB="$STATE/mlflow.db"
MLFLOW_ARTIFACTS="$STATE/mlartifacts"

RAY_PID_FILE="$RUN_DIR/ray.pid"
RAY_CONF_FILE="$RUN_DIR/ray.env"
RAY_LOG="$LOG_DIR/ray-head.log"
MLFLOW_PID_FILE="$RUN_DIR/mlflow.pid"
MLFLOW_CONF_FILE="$RUN_DIR/mlflow.env"
MLFLOW_LOG="$LOG_DIR/mlflow.log"

QUIET=0

# `ray start --node-ip-address=127.0.0.1` is rewritten by Ray to the machine's routable IP, and
# the GCS then listens on every interface. Ray's single-node mode (the default on macOS and
# Windows, switched by this variable) keeps the node IP, and so every Ray port, on 127.0.0.1.
# Clients that use the GCS address (`ray status`, `ray.init(address=...)`) need the same
# setting, so it is part of the exports; `ray job submit` (HTTP) does not.
if [[ "${AUDIOSWEEP_RAY_LOOPBACK:-1}" == 1 ]]; then
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
else
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
fi

say() { [[ $QUIET == 1 ]] || printf '%s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Ray puts unix sockets under <temp-dir>/session_<timestamp>_<pid>/sockets/, and a socket path
# must fit in 107 bytes; when the state folder is deep, a short symlink in /tmp stands in for
# <state>/ray (the data still lives in the state folder).
ray_temp_dir() {
    local real="$STATE/ray"
    if ((${#real} <= 40)); then
        printf '%s\n' "$real"
    else
        local digest
        digest="$(printf '%s' "$real" | sha1sum | cut -c1-10)"
        printf '/tmp/audiosweep-ray-%s\n' "$digest"
    fi
}

# 0 if pid is alive and its command line contains every given fragment (guards against a
# recycled pid being mistaken for ours).
pid_matches() {
    local pid="$1"
    shift
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    local frag
    for frag in "$@"; do
        [[ "$cmd" == *"$frag"* ]] || return 1
    done
}

# 0 if pid $1 is running; zombies count as gone (pid 1 here may never reap orphans).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != [ZX] ]]
}

read_pid() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }

# pids of every live (non-zombie) process in process group $1
group_pids() {
    ps -eo pid=,pgid=,stat= | awk -v g="$1" 'g > 1 && $2 == g && $3 !~ /^Z/ { print $1 }'
}

# pids of $1 and all its live descendants (Ray workers and job drivers leave the head's process
# group but stay its descendants).
tree_pids() {
    ps -eo pid=,ppid=,stat= | awk -v root="$1" '
        root > 1 && $3 !~ /^Z/ { parent[$1] = $2 }
        END {
            for (p in parent) {
                q = p; n = 0
                while (q != root && (q in parent) && n++ < 1000) q = parent[q]
                if (q == root) print p
            }
        }'
}

# 0 if something listens on TCP port $1 on any local address.
port_in_use() {
    ! "$VENV_BIN/python" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
EOF
}

# curl with the Ray token sent as a header read from stdin, so it never shows up in `ps`.
curl_ray() {
    local url="$1"
    printf 'Authorization: Bearer %s\n' "$RAY_AUTH_TOKEN" |
        curl --silent --fail --max-time 5 --header @- --output /dev/null "$url"
}

print_exports() {
    # RAY_ADDRESS is the job-submission (HTTP) address used by `ray job submit`; a plain
    # `ray.init()` in the same shell needs RAY_ADDRESS unset or set to AUDIOSWEEP_RAY_GCS_ADDRESS.
    cat <<EOF
export RAY_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN
export AUDIOSWEEP_RAY_GCS_ADDRESS=127.0.0.1:$RAY_PORT
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
EOF
}
