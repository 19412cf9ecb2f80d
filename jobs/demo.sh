#!/usr/bin/env bash
# `make demo`: the platform's main job on this machine, from a fresh clone.
#   1. prepare the embedded demo dataset (once),
#   2. start the local Ray head and MLflow server (infra/local/up.sh),
#   3. submit the paper's 6-case x 3-seed grid with the demo preset through `ray job submit`
#      and follow its logs,
#   4. print the report table and where to look at the runs in the MLflow UI.
# The services keep running afterwards (for the UI); `make down` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN="$PWD/.venv/bin"
export PATH="$VENV_BIN:$PATH"

DATA="${AUDIOSWEEP_DEMO_DATA:-data/demo}"
SWEEP_ID="${AUDIOSWEEP_DEMO_SWEEP:-grid-demo-$(date +%Y%m%d-%H%M%S)}"
RUN_ROOT="$PWD/runs"
# Extra overrides for every trial, e.g. AUDIOSWEEP_DEMO_OVERRIDES="train.epochs=2".
read -r -a EXTRA <<<"${AUDIOSWEEP_DEMO_OVERRIDES:-}"

# The dataset is made while the services start (about 12 s each on 2 cores).
prep_pid=""
if [[ -f "$DATA/manifest.json" ]]; then
    echo "== demo dataset already in $DATA"
    audiosweep summary "$DATA"
else
    echo "== preparing the demo dataset in $DATA (while the services start)"
    prep_log="$(mktemp)"
    # WAV rather than FLAC: every trial decodes each clip a dozen times, and 16-bit WAV decodes
    # several times faster for the same samples (docs/BENCHMARKS.md, input pipeline).
    audiosweep prepare demo --out "$DATA" --train-clips 600 --eval-clips 200 \
        --clip-seconds 5 --sample-rate 16000 --format wav --no-progress >"$prep_log" 2>&1 &
    prep_pid=$!
fi

echo "== starting the local Ray head and MLflow server"
eval "$(bash infra/local/up.sh --exports-only)"

if [[ -n "$prep_pid" ]]; then
    if ! wait "$prep_pid"; then
        cat "$prep_log" >&2
        echo "error: preparing the demo dataset in $DATA failed (output above)" >&2
        exit 1
    fi
    cat "$prep_log"
    rm -f "$prep_log"
fi

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
runtime_env=$(printf '{"env_vars": {"MLFLOW_TRACKING_URI": "%s", "AUDIOSWEEP_GIT_COMMIT": "%s"}}' \
    "$MLFLOW_TRACKING_URI" "$commit")

echo "== submitting the grid (18 trials) to $RAY_ADDRESS as sweep $SWEEP_ID"
start=$(date +%s)
ray job submit --address "$RAY_ADDRESS" --working-dir . --runtime-env-json "$runtime_env" -- \
    python jobs/grid.py --preset demo "data.path=$PWD/$DATA" ${EXTRA[@]+"${EXTRA[@]}"} \
    --run-root "$RUN_ROOT" --name "$SWEEP_ID"
echo "== sweep finished in $(( $(date +%s) - start )) s"

echo
cat "$RUN_ROOT/sweeps/$SWEEP_ID/report/report.md"
echo
echo "Report files: $RUN_ROOT/sweeps/$SWEEP_ID/report/ (report.md, report.csv, report.png)"
echo "MLflow UI:    $MLFLOW_TRACKING_URI  (experiment dcls-audio-grid; select the child runs and"
echo "              press Compare). From another machine: ssh -L 5000:127.0.0.1:5000 <this host>"
echo "Stop the services with: make down"
