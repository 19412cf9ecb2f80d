#!/usr/bin/env bash
# Install the project, editable, into a virtualenv and check the result by using it:
# `install.sh [VENV] [EXTRAS]` (defaults: .venv, dev; EXTRAS "" installs the runtime only).
#
# pip chooses every wheel; uv installs them. With several indexes (pip's index-url,
# extra-index-url, find-links), one index may serve only a pure `py3-none-any` wheel of a
# version whose platform wheel (with its bundled C library) lives in another. pip picks the
# most specific wheel across all of them; uv takes the first index that has the version, even
# with `--index-strategy unsafe-best-match`, and so can install e.g. a soundfile without
# libsndfile. So pip resolves (`--dry-run --report`, its own configuration, constraints and
# wheel choice) and uv installs exactly those files, hash-checked: the 5.7 GB stack takes
# about a minute instead of pip's five.
#
# The install is then checked (infra/local/check_install.py: every package imports, FLAC
# decodes). A failed check re-installs the named packages with pip; if that does not mend it,
# the venv is rebuilt with pip alone; if that fails too, the script stops naming the package.
# AUDIOSWEEP_INSTALLER=pip skips uv altogether.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${1:-.venv}"
EXTRAS="${2-dev}"
UV_VERSION="0.13.9"
PY="$VENV/bin/python"
TARGET="."
[[ -z "$EXTRAS" ]] || TARGET=".[$EXTRAS]"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

new_venv() { python3 -m venv "$VENV"; }

check() { "$PY" infra/local/check_install.py 2>"$WORK/check.err"; }

install_with_pip() {
    echo "installing $TARGET into $VENV with pip"
    "$PY" -m pip install -q -e "$TARGET"
}

install_with_uv() {
    "$PY" -m pip install -q "uv==$UV_VERSION" || return 1
    echo "resolving $TARGET with pip"
    # --ignore-installed: the report lists the whole environment, not only what is missing.
    "$PY" -m pip install -q --dry-run --ignore-installed --report "$WORK/report.json" \
        -e "$TARGET" 2>"$WORK/resolve.err" || {
        cat "$WORK/resolve.err" >&2
        return 1
    }
    "$PY" - "$WORK/report.json" >"$WORK/requirements.txt" <<'PY'
import json, sys

for item in json.load(open(sys.argv[1]))["install"]:
    info = item["download_info"]
    if "dir_info" in info:  # the project itself, installed editable below
        continue
    name = item["metadata"]["name"]
    line = f"{name} @ {info['url']}"
    for algo, digest in sorted(info.get("archive_info", {}).get("hashes", {}).items()):
        line += f" --hash={algo}:{digest}"
    print(line)
PY
    echo "installing $(wc -l <"$WORK/requirements.txt") wheels into $VENV with uv $UV_VERSION"
    # Bytecode compiled now: Ray starts a dozen Python processes per trial, and with
    # PYTHONDONTWRITEBYTECODE set each would otherwise compile what it imports.
    "$PY" -m uv pip install -q --python "$PY" --compile-bytecode --no-deps \
        -r "$WORK/requirements.txt" &&
        "$PY" -m uv pip install -q --python "$PY" --no-deps -e .
}

repair_with_pip() {
    # The distribution names are the first word of each failed check's line.
    local names
    names="$(sed -n 's/^install check: \([A-Za-z0-9_.-]*\):.*/\1/p' "$WORK/check.err" | sort -u)"
    [[ -n "$names" ]] || return 1
    echo "re-installing with pip's wheel choice: $names"
    local specs=()
    for name in $names; do
        specs+=("$name==$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")")
    done
    "$PY" -m pip install -q --force-reinstall --no-deps "${specs[@]}"
}

[[ -x "$PY" ]] || new_venv
if [[ "${AUDIOSWEEP_INSTALLER:-uv}" == "uv" ]] && install_with_uv && check; then
    exit 0
fi
if [[ -s "$WORK/check.err" ]]; then
    cat "$WORK/check.err" >&2
    repair_with_pip && check && exit 0
    echo "the repaired install still fails its check; rebuilding $VENV with pip" >&2
    rm -rf "$VENV"
    new_venv
elif [[ "${AUDIOSWEEP_INSTALLER:-uv}" == "uv" ]]; then
    echo "the uv install failed; installing with pip" >&2
fi
install_with_pip
if ! check; then
    cat "$WORK/check.err" >&2
    echo "error: $VENV is broken after a pip install (see the lines above for the package);" \
        "check pip's index configuration (pip config list) and re-run 'make setup'" >&2
    exit 1
fi
