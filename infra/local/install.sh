#!/usr/bin/env bash
# Install the project, editable, into a virtualenv: `install.sh [VENV] [EXTRAS]`
# (defaults: .venv, dev; EXTRAS "" installs the runtime only).
#
# uv installs the pinned torch/Ray/MLflow stack (5.7 GB) in well under a minute on a 2-core
# machine with an empty cache, pip in about 5 minutes; both resolve the same versions. uv is
# used when it can be installed into the venv, pip otherwise (or with AUDIOSWEEP_INSTALLER=pip).
# uv does not read pip's configuration, so the index URLs and find-links pip is configured with
# (pip.conf or PIP_* variables) are passed on, with pip's "best match across indexes" rule.
# Bytecode is compiled at install time: Ray starts a dozen Python processes per trial, and
# with PYTHONDONTWRITEBYTECODE set each would otherwise compile what it imports.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${1:-.venv}"
EXTRAS="${2-dev}"
UV_VERSION="0.13.9"
PY="$VENV/bin/python"
TARGET="."
[[ -z "$EXTRAS" ]] || TARGET=".[$EXTRAS]"

[[ -x "$PY" ]] || python3 -m venv "$VENV"

pip_setting() {
    # $1: pip config key, $2: the PIP_* variable that overrides it
    local value="${!2:-}"
    [[ -n "$value" ]] || value="$("$PY" -m pip config get "global.$1" 2>/dev/null || true)"
    printf '%s' "$value"
}

install_with_uv() {
    "$PY" -m pip install -q "uv==$UV_VERSION" || return 1
    local args=(--python "$PY" --compile-bytecode --index-strategy unsafe-best-match)
    local url
    url="$(pip_setting index-url PIP_INDEX_URL)"
    [[ -z "$url" ]] || args+=(--index-url "$url")
    for url in $(pip_setting extra-index-url PIP_EXTRA_INDEX_URL); do
        args+=(--extra-index-url "$url")
    done
    for url in $(pip_setting find-links PIP_FIND_LINKS); do
        args+=(--find-links "$url")
    done
    echo "installing $TARGET into $VENV with uv $UV_VERSION"
    "$PY" -m uv pip install "${args[@]}" -e "$TARGET"
}

install_with_pip() {
    echo "installing $TARGET into $VENV with pip"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -e "$TARGET"
}

if [[ "${AUDIOSWEEP_INSTALLER:-uv}" == "uv" ]]; then
    install_with_uv || {
        echo "uv install failed; falling back to pip" >&2
        install_with_pip
    }
else
    install_with_pip
fi
