#!/usr/bin/env bash
# Start a local Ray head (dashboard + job server) and an MLflow tracking server, both bound to
# 127.0.0.1, with all their state in one folder (default <repo>/.local/infra).
#
#   infra/local/up.sh                  start (or find running), then print `export` lines
#   eval "$(infra/local/up.sh --exports-only)"   the same, silently, into the current shell
#
# Settings (ports, state folder, CPUs, timeouts): see infra/local/common.sh. Stop with
# infra/local/down.sh, which stops exactly these processes and nothing else.
#
# Ray token auth: clients (`ray job submit`, drivers) need the same RAY_AUTH_MODE/RAY_AUTH_TOKEN
# as the head. If RAY_AUTH_TOKEN is already set in the environment when the head is started, that
# token is used (so a shell or test session that already has one keeps it); otherwise a random
# token is generated once into <state>/ray_auth_token (mode 600) and reused on later starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

for arg in "$@"; do
    case "$arg" in
    --exports-only | -q | --quiet) QUIET=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

for tool in ray mlflow python; do
    [[ -x "$VENV_BIN/$tool" ]] || die "$VENV_BIN/$tool not found: run 'make setup' first (or set AUDIOSWEEP_VENV_BIN)"
done
for tool in curl setsid flock; do
    command -v "$tool" >/dev/null || die "'$tool' is required but not installed"
done

mkdir -p "$STATE" "$RUN_DIR" "$LOG_DIR" "$MLFLOW_ARTIFACTS"
chmod 700 "$STATE"
# One up.sh/down.sh at a time per state folder.
exec 9>"$RUN_DIR/lock"
flock -w 300 9 || die "another up.sh/down.sh holds $RUN_DIR/lock"

started_at=$SECONDS
RAY_TMP="$(ray_temp_dir)"
RAY_AUTH_TOKEN_ENV="${RAY_AUTH_TOKEN:-}"

# ---------------------------------------------------------------- Ray head
ray_pid="$(read_pid "$RAY_PID_FILE")"
if [[ -n "$ray_pid" ]] && pid_matches "$ray_pid" "ray" "start" "--head" "--temp-dir=$RAY_TMP"; then
    ray_running=1
    # shellcheck source=/dev/null
    source "$RAY_CONF_FILE"
    [[ -s "$TOKEN_FILE" ]] || die "Ray head (pid $ray_pid) is running but $TOKEN_FILE is missing; stop it with down.sh"
    RAY_AUTH_TOKEN="$(<"$TOKEN_FILE")"
    if [[ -n "${AUDIOSWEEP_RAY_PORT:-}${AUDIOSWEEP_DASHBOARD_PORT:-}" ]] &&
        [[ "${AUDIOSWEEP_RAY_PORT:-$RAY_PORT}:${AUDIOSWEEP_DASHBOARD_PORT:-$DASHBOARD_PORT}" != "$RAY_PORT:$DASHBOARD_PORT" ]]; then
        warn "Ray head already running on ports $RAY_PORT/$DASHBOARD_PORT; requested ports ignored (run down.sh first to change them)"
    fi
else
    ray_running=0
    [[ -z "$ray_pid" ]] || say "Stale Ray pid file (process $ray_pid is gone): starting a new head."
    rm -f "$RAY_PID_FILE" "$RAY_CONF_FILE"
    RAY_PORT="${AUDIOSWEEP_RAY_PORT:-6380}"
    RAY_CLIENT_PORT="${AUDIOSWEEP_RAY_CLIENT_PORT:-$((RAY_PORT + 1))}"
    DASHBOARD_PORT="${AUDIOSWEEP_DASHBOARD_PORT:-8265}"
    for spec in "$RAY_PORT:AUDIOSWEEP_RAY_PORT" "$RAY_CLIENT_PORT:AUDIOSWEEP_RAY_CLIENT_PORT" \
        "$DASHBOARD_PORT:AUDIOSWEEP_DASHBOARD_PORT"; do
        port="${spec%%:*}"
        # Ray hands 10002-19999 to its worker processes and refuses other components there.
        ((port < 10002 || port > 19999)) || die "port $port is in Ray's worker port range 10002-19999; choose another with ${spec#*:}=<port>"
        port_in_use "$port" && die "port $port is already in use; choose another with ${spec#*:}=<port>"
    done
    if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
        say "Using RAY_AUTH_TOKEN from the environment for the Ray head."
    elif [[ -s "$TOKEN_FILE" ]]; then
        RAY_AUTH_TOKEN="$(<"$TOKEN_FILE")"
    else
        RAY_AUTH_TOKEN="$("$VENV_BIN/python" -c 'import secrets; print(secrets.token_hex(32))')"
    fi
    (
        umask 077
        printf '%s' "$RAY_AUTH_TOKEN" >"$TOKEN_FILE"
    )
fi

# ---------------------------------------------------------------- MLflow server
mlflow_pid="$(read_pid "$MLFLOW_PID_FILE")"
if [[ -n "$mlflow_pid" ]] && pid_matches "$mlflow_pid" "mlflow" "server" "$MLFLOW_DB"; then
    mlflow_running=1
    # shellcheck source=/dev/null
    source "$MLFLOW_CONF_FILE"
    if [[ -n "${AUDIOSWEEP_MLFLOW_PORT:-}" && "$AUDIOSWEEP_MLFLOW_PORT" != "$MLFLOW_PORT" ]]; then
        warn "MLflow server already running on port $MLFLOW_PORT; requested port ignored"
    fi
else
    mlflow_running=0
    [[ -z "$mlflow_pid" ]] || say "Stale MLflow pid file (process $mlflow_pid is gone): starting a new server."
    rm -f "$MLFLOW_PID_FILE" "$MLFLOW_CONF_FILE"
    MLFLOW_PORT="${AUDIOSWEEP_MLFLOW_PORT:-5000}"
    port_in_use "$MLFLOW_PORT" && die "port $MLFLOW_PORT is already in use; choose another with AUDIOSWEEP_MLFLOW_PORT=<port>"
fi
MLFLOW_URI="http://127.0.0.1:$MLFLOW_PORT"
# MLflow's usage telemetry (on by default since MLflow 3, sent to mlflow-telemetry.io) is off for
# the server and for every process of the Ray head, unless the caller sets it to false.
MLFLOW_TELEMETRY_OFF="${MLFLOW_DISABLE_TELEMETRY:-true}"

if ((ray_running)); then
    say "Ray head already running (pid $ray_pid, GCS 127.0.0.1:$RAY_PORT, dashboard 127.0.0.1:$DASHBOARD_PORT)."
    [[ "${HEAD_MLFLOW_URI:-}" == "$MLFLOW_URI" ]] ||
        warn "the Ray head's default MLFLOW_TRACKING_URI is ${HEAD_MLFLOW_URI:-unset}, not $MLFLOW_URI; restart with down.sh + up.sh"
    if [[ -n "${RAY_AUTH_TOKEN_ENV:-}" && "$RAY_AUTH_TOKEN_ENV" != "$RAY_AUTH_TOKEN" ]]; then
        warn "RAY_AUTH_TOKEN in this shell differs from the running head's token; use the exports below"
    fi
else
    if [[ "$RAY_TMP" != "$STATE/ray" ]]; then
        mkdir -p "$STATE/ray"
        if [[ -e "$RAY_TMP" && ! -L "$RAY_TMP" ]]; then
            die "$RAY_TMP exists and is not a symlink to $STATE/ray; remove it or use a shorter AUDIOSWEEP_STATE"
        fi
        ln -sfn "$STATE/ray" "$RAY_TMP"
    fi
    mkdir -p "$RAY_TMP"
    num_cpus="${AUDIOSWEEP_NUM_CPUS:-$(nproc)}"
    gpu_args=()
    [[ -z "${AUDIOSWEEP_NUM_GPUS:-}" ]] || gpu_args=("--num-gpus=$AUDIOSWEEP_NUM_GPUS")
    # Ray's fixed default ports for its agents and metrics, unless given: a second head on the
    # same machine (e.g. a test session next to `make up`) needs its own.
    port_args=()
    [[ -z "${AUDIOSWEEP_RAY_AGENT_GRPC_PORT:-}" ]] || port_args+=("--dashboard-agent-grpc-port=$AUDIOSWEEP_RAY_AGENT_GRPC_PORT")
    [[ -z "${AUDIOSWEEP_RAY_RUNTIME_ENV_PORT:-}" ]] || port_args+=("--runtime-env-agent-port=$AUDIOSWEEP_RAY_RUNTIME_ENV_PORT")
    [[ -z "${AUDIOSWEEP_RAY_METRICS_PORT:-}" ]] || port_args+=("--metrics-export-port=$AUDIOSWEEP_RAY_METRICS_PORT")
    # infra/sim/up.sh: Ray's fake multi-node autoscaler, which starts worker nodes as local
    # processes (children of the head's autoscaler, so in the head's process group) and needs
    # the head's GCS address in its provider config.
    sim_args=()
    sim_env=()
    if [[ -n "${AUDIOSWEEP_SIM_CONFIG:-}" ]]; then
        "$VENV_BIN/python" - "$AUDIOSWEEP_SIM_CONFIG" "$STATE/sim-cluster.yaml" "127.0.0.1:$RAY_PORT" <<'EOF' ||
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["provider"]["gcs_address"] = sys.argv[3]
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
EOF
            die "cannot read the simulated cluster config $AUDIOSWEEP_SIM_CONFIG"
        sim_args=("--autoscaling-config=$STATE/sim-cluster.yaml")
        # Every process names this cluster: Ray's state API (used e.g. by Ray Train's placement
        # group cleaner) otherwise finds several clusters on this machine and gives up.
        sim_env=(RAY_FAKE_CLUSTER=1 "RAY_ADDRESS=127.0.0.1:$RAY_PORT")
        # The config's node provider (infra/sim/audiosweep_sim_provider.py) is imported by
        # the head's autoscaler.
        sim_dir="$(cd "$(dirname "$AUDIOSWEEP_SIM_CONFIG")" && pwd)"
        sim_env+=("PYTHONPATH=$sim_dir${PYTHONPATH:+:$PYTHONPATH}")
    fi
    say "Starting Ray head ($num_cpus CPUs, GCS 127.0.0.1:$RAY_PORT, dashboard 127.0.0.1:$DASHBOARD_PORT); log: $RAY_LOG"
    # --block keeps `ray start` in the foreground as the parent of every head process; setsid
    # makes it the leader of a new process group, so down.sh can stop this head (and only this
    # head) by group id. RAY_ADDRESS from a previous `eval` must not leak into the head.
    # Drivers and workers inherit this environment: the local MLflow server as default tracking
    # URI, few Parquet footer-reader actors so Ray Data fits on a small machine, and the venv
    # first on PATH so a job entrypoint `python ...` runs the project's interpreter.
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (see common.sh) keeps every Ray port on loopback.
    # The raylet kills idle workers beyond num_workers_soft_limit (default: the CPU count) after
    # a second; every trial holds about ten actors, so on a 2-CPU head each Ray Data task would
    # start a fresh process and import pyarrow/soundfile again. A higher limit keeps them warm.
    # One local node cannot be preempted, so Ray Train's preemption watcher (one more actor
    # per trial) is off here; cluster heads keep it.
    env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS PATH="$VENV_BIN:$PATH" \
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" \
        RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$RAY_AUTH_TOKEN" RAY_USAGE_STATS_ENABLED=0 \
        RAY_num_workers_soft_limit="${RAY_num_workers_soft_limit:-32}" \
        RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="${RAY_TRAIN_ENABLE_PREEMPTION_WATCHER:-0}" \
        MLFLOW_DISABLE_TELEMETRY="$MLFLOW_TELEMETRY_OFF" \
        MLFLOW_TRACKING_URI="$MLFLOW_URI" "${sim_env[@]}" \
        setsid "$VENV_BIN/ray" start --head --block \
        --node-ip-address=127.0.0.1 \
        --port="$RAY_PORT" \
        --ray-client-server-port="$RAY_CLIENT_PORT" \
        --include-dashboard=true \
        --dashboard-host=127.0.0.1 \
        --dashboard-port="$DASHBOARD_PORT" \
        --dashboard-agent-listen-port=0 \
        --num-cpus="$num_cpus" \
        "${gpu_args[@]}" \
        "${port_args[@]}" \
        "${sim_args[@]}" \
        --temp-dir="$RAY_TMP" \
        --disable-usage-stats \
        </dev/null >"$RAY_LOG" 2>&1 9>&- &
    ray_pid=$!
    printf '%s\n' "$ray_pid" >"$RAY_PID_FILE"
    cat >"$RAY_CONF_FILE" <<EOF
RAY_PORT=$RAY_PORT
RAY_CLIENT_PORT=$RAY_CLIENT_PORT
DASHBOARD_PORT=$DASHBOARD_PORT
RAY_TMP=$RAY_TMP
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
HEAD_MLFLOW_URI=$MLFLOW_URI
EOF
fi

if ((mlflow_running)); then
    say "MLflow server already running (pid $mlflow_pid, $MLFLOW_URI)."
else
    say "Starting MLflow server ($MLFLOW_URI, backend $MLFLOW_DB); log: $MLFLOW_LOG"
    # Artifacts are served over HTTP (mlflow-artifacts:/), so Ray workers upload through the
    # server and never need a path on this machine. setsid: see the Ray head above.
    # The server's job runner (GenAI evaluation jobs, 8 extra processes) is not needed here.
    env -u MLFLOW_TRACKING_URI \
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
        MLFLOW_DISABLE_TELEMETRY="$MLFLOW_TELEMETRY_OFF" \
        setsid "$VENV_BIN/mlflow" server \
        --host 127.0.0.1 \
        --port "$MLFLOW_PORT" \
        --workers "${AUDIOSWEEP_MLFLOW_WORKERS:-1}" \
        --backend-store-uri "sqlite:///$MLFLOW_DB" \
        --serve-artifacts \
        --artifacts-destination "$MLFLOW_ARTIFACTS" \
        </dev/null >"$MLFLOW_LOG" 2>&1 9>&- &
    mlflow_pid=$!
    printf '%s\n' "$mlflow_pid" >"$MLFLOW_PID_FILE"
    printf 'MLFLOW_PORT=%s\n' "$MLFLOW_PORT" >"$MLFLOW_CONF_FILE"
fi

# ---------------------------------------------------------------- wait until healthy
fail_with_log() {
    local what="$1" log="$2"
    printf 'error: %s\n--- last lines of %s ---\n' "$what" "$log" >&2
    tail -n 30 "$log" >&2 || true
    printf -- '---\nStop whatever did start with: %s\n' "${AUDIOSWEEP_DOWN_HINT:-$(dirname "${BASH_SOURCE[0]}")/down.sh}" >&2
    exit 1
}

timeout_s="${AUDIOSWEEP_UP_TIMEOUT:-180}"
deadline=$((SECONDS + timeout_s))
ray_ok=0
mlflow_ok=0
while ((!ray_ok || !mlflow_ok)); do
    if ((!mlflow_ok)); then
        alive "$mlflow_pid" || fail_with_log "the MLflow server exited during start-up" "$MLFLOW_LOG"
        if curl --silent --fail --max-time 5 --output /dev/null "$MLFLOW_URI/health"; then
            mlflow_ok=1
            say "MLflow server healthy after $((SECONDS - started_at)) s."
        fi
    fi
    if ((!ray_ok)); then
        alive "$ray_pid" || fail_with_log "the Ray head exited during start-up" "$RAY_LOG"
        # The job API answering (with our token) means the dashboard is ours and can take jobs;
        # `ray status` confirms the GCS and raylet are up and resources are registered.
        if curl_ray "http://127.0.0.1:$DASHBOARD_PORT/api/jobs/" &&
            status="$(env -u RAY_ADDRESS RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$RAY_AUTH_TOKEN" \
                RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" \
                timeout 60 "$VENV_BIN/ray" status --address="127.0.0.1:$RAY_PORT" 2>/dev/null)" &&
            # A simulated cluster's head offers no CPU; its autoscaler's report names the head.
            [[ "$status" == *CPU* || (-n "${AUDIOSWEEP_SIM_CONFIG:-}" && "$status" == *Active:*) ]]; then
            ray_ok=1
            say "Ray head healthy after $((SECONDS - started_at)) s."
        fi
    fi
    ((ray_ok && mlflow_ok)) && break
    if ((SECONDS >= deadline)); then
        ((ray_ok)) || fail_with_log "the Ray head is not healthy after ${timeout_s} s" "$RAY_LOG"
        fail_with_log "the MLflow server is not healthy after ${timeout_s} s" "$MLFLOW_LOG"
    fi
    sleep 1
done

# ---------------------------------------------------------------- exports
(
    umask 077
    print_exports >"$ENV_FILE"
)
printf '%s\n' "$MLFLOW_URI" >"$URI_FILE"

say ""
say "Ray dashboard: http://127.0.0.1:$DASHBOARD_PORT   MLflow UI: $MLFLOW_URI"
say "State: $STATE   Stop: ${AUDIOSWEEP_DOWN_HINT:-infra/local/down.sh}"
say "Load these into your shell with: source $ENV_FILE"
print_exports
