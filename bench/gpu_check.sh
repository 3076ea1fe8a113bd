#!/usr/bin/env bash
# The GPU check in one call: full-size network (random weights), one 16-frame 512² clip per preset, dtype
# and option; one JSON line each (bench/gpu_check.py). Needs no network: the Python packages the GPU
# machine's image lacks travel as wheels in bench/wheels/ (ignored by git), filled here beforehand.
#
#   bench/gpu_check.sh --prepare      # here, with network: download the wheels into bench/wheels/
#   bench/gpu_check.sh --dry-run      # here, on the CPU: the same code path, tiny network at 64², 2 steps
#   bench/gpu_check.sh                # on the GPU machine: installs the wheels, then runs (< 8 minutes)
#
# Extra arguments go to bench/gpu_check.py (--budget-s, --presets, --dtypes, --skip compile,fp8).
# The GPU machine's image has python3 3.12 with torch (CUDA), transformers, huggingface-hub, safetensors,
# numpy and pillow; it lacks diffusers, importlib_metadata and torchao.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/bench/wheels"
PY="${PYTHON:-python3}"
# dist==version  import-name   (versions: what the image's torch 2.11 / huggingface-hub 1.33 accept)
REQUIREMENTS=("diffusers==0.42.0 diffusers" "importlib_metadata==8.7.0 importlib_metadata" "torchao==0.17.0 torchao")

prepare() {
    mkdir -p "$WHEELS"
    local specs=()
    for req in "${REQUIREMENTS[@]}"; do specs+=("${req%% *}"); done
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${specs[@]}"
    du -sh "$WHEELS"
}

install_missing() {
    # Only what the image lacks, into a private folder: the image's torch and packages stay as they are.
    local site="$1" missing=()
    for req in "${REQUIREMENTS[@]}"; do
        local dist="${req%% *}" module="${req##* }"
        if ! "$PY" -c "import $module" 2>/dev/null; then
            local wheel
            wheel="$(ls "$WHEELS"/"${dist%%==*}"-*.whl 2>/dev/null | head -n 1 || true)"
            if [[ -z "$wheel" ]]; then
                echo "{\"kind\": \"note\", \"note\": \"$module missing and no wheel in bench/wheels (run --prepare)\"}"
            else
                missing+=("$wheel")
            fi
        fi
    done
    if ((${#missing[@]})); then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${missing[@]}"
    fi
}

if [[ "${1:-}" == "--prepare" ]]; then
    prepare
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/pkg" "$TMP/site"
ln -s "$ROOT" "$TMP/pkg/hallo_nodes"  # the checkout is the package (pyproject: package-dir hallo_nodes = .)
if [[ "${1:-}" != "--dry-run" ]]; then
    install_missing "$TMP/site"
fi
export PYTHONPATH="$TMP/pkg:$TMP/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Hard stop under 8 minutes; each JSON line is printed as soon as its configuration ends.
timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT_S:-460}" "$PY" -m hallo_nodes.bench.gpu_check "$@"
