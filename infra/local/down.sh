#!/usr/bin/env bash
# Stop the Ray head and MLflow server that infra/local/up.sh started, by their process group ids
# (never `ray stop`, which would kill every Ray process on the host).
#
#   infra/local/down.sh            stop; keep the MLflow DB, artifacts, logs and auth token
#   infra/local/down.sh --purge    stop, then delete the state folder's contents too
#
# Same environment settings as up.sh (see infra/local/common.sh), AUDIOSWEEP_STATE in particular.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=0
for arg in "$@"; do
    case "$arg" in
    --purge) purge=1 ;;
    -q | --quiet) QUIET=1 ;;
    -h | --help)
        sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

if [[ ! -d "$RUN_DIR" ]]; then
    say "Nothing to stop: $RUN_DIR does not exist (up.sh never ran with this AUDIOSWEEP_STATE)."
    exit 0
fi
exec 9>"$RUN_DIR/lock"
flock -w 300 9 || die "another up.sh/down.sh holds $RUN_DIR/lock"

grace="${AUDIOSWEEP_STOP_GRACE:-20}"
started_at=$SECONDS

# Waits until none of the given pids is alive or the deadline passes; 0 if all are gone.
wait_gone() {
    local deadline=$((SECONDS + $1))
    shift
    local p any
    while :; do
        any=0
        for p in "$@"; do
            alive "$p" && any=1 && break
        done
        ((any)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# stop_group NAME PID_FILE CMDLINE_FRAGMENT...
stop_group() {
    local name="$1" pid_file="$2"
    shift 2
    local pgid
    pgid="$(read_pid "$pid_file")"
    if [[ -z "$pgid" ]]; then
        say "$name: not running (no pid file)."
        return 0
    fi
    # A signal to group 0/1 or to our own group would hit far more than this service.
    if ((pgid < 2)) || [[ "$pgid" == "$$" || "$pgid" == "$(ps -o pgid= -p $$ | tr -d ' ')" ]]; then
        warn "$name: refusing to signal process group '$pgid' from $pid_file"
        rm -f "$pid_file"
        return 0
    fi
    # A live leader must still be our command (pids get recycled). A dead leader whose group
    # still has members is ours: Linux does not hand out a pid still used as a group id.
    if alive "$pgid" && ! pid_matches "$pgid" "$@"; then
        say "$name: pid $pgid now belongs to another program; not touching it."
        rm -f "$pid_file"
        return 0
    fi
    local members
    members="$( (
        group_pids "$pgid"
        tree_pids "$pgid"
    ) | awk -v self="$$" '$1 > 1 && $1 != self' | sort -un)"
    if [[ -z "$members" ]]; then
        say "$name: not running (process group $pgid is gone)."
        rm -f "$pid_file"
        return 0
    fi
    say "$name: stopping process group $pgid ($(wc -w <<<"$members") processes)..."
    # The leader first: `ray start --block` and `mlflow server` shut their children down in
    # order on SIGTERM (about 3 s for the Ray head); signalling every process at once makes
    # the Ray head's shutdown hang.
    if alive "$pgid"; then
        kill -TERM "$pgid" 2>/dev/null || true
        wait_gone "$grace" "$pgid" || true
    fi
    local rest=() p
    for p in $members; do alive "$p" && rest+=("$p"); done
    if ((${#rest[@]})); then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        kill -TERM "${rest[@]}" 2>/dev/null || true
        if ! wait_gone 5 "${rest[@]}"; then
            say "$name: still running after SIGTERM; sending SIGKILL."
            kill -KILL -- "-$pgid" 2>/dev/null || true
            kill -KILL "${rest[@]}" 2>/dev/null || true
            wait_gone 10 "${rest[@]}" || warn "$name: processes survived SIGKILL: $(group_pids "$pgid" | xargs)"
        fi
    fi
    rm -f "$pid_file"
    say "$name: stopped."
}

RAY_TMP="$(ray_temp_dir)"
stop_group "Ray head" "$RAY_PID_FILE" "ray" "start" "--head" "--temp-dir=$RAY_TMP"

# Job drivers run in their own sessions; Ray kills each driver's group once its supervisor (a
# member of the head's group) is gone. Anything still naming this head's session folder is
# reported, not killed: a broad match must never lead to a signal.
session_frag="$RAY_TMP/session_"
leftovers="$(ps -eww -o pid=,args= | FRAG="$session_frag" awk -v self="$$" '
    ENVIRON["FRAG"] != "" && index($0, ENVIRON["FRAG"]) > 0 && $1 != self { print $1 }')"
[[ -z "$leftovers" ]] ||
    warn "processes still referencing $session_frag* (left running): $(xargs <<<"$leftovers")"

stop_group "MLflow server" "$MLFLOW_PID_FILE" "mlflow" "server" "$MLFLOW_DB"

# These describe running services only; the token, DB, artifacts and logs stay.
rm -f "$RAY_CONF_FILE" "$MLFLOW_CONF_FILE" "$ENV_FILE" "$URI_FILE"
# The short /tmp alias of <state>/ray (see ray_temp_dir) is only needed while the head runs.
if [[ "$RAY_TMP" != "$STATE/ray" && -L "$RAY_TMP" && "$(readlink "$RAY_TMP")" == "$STATE/ray" ]]; then
    rm -f -- "$RAY_TMP"
fi

if ((purge)); then
    say "Purging state in $STATE (MLflow DB, artifacts, Ray sessions, logs, token)."
    rm -rf -- "$STATE/ray" "$LOG_DIR" "$MLFLOW_ARTIFACTS" "$MLFLOW_DB" "$TOKEN_FILE"
    rm -rf -- "$RUN_DIR"
    rmdir -- "$STATE" 2>/dev/null || true
else
    say "Kept: $MLFLOW_DB, $MLFLOW_ARTIFACTS, $LOG_DIR (delete with --purge)."
fi
say "Done in $((SECONDS - started_at)) s."
