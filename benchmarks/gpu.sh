#!/usr/bin/env bash
# Every GPU measurement of minivl in one go, sized for under five minutes on an H100/H200.
#
#   benchmarks/gpu.sh [OUT_DIR] [--dry-run]
#
# OUT_DIR defaults to $OUT, else benchmarks/results/gpu. Four parts, each under its own
# time limit; a part that fails is reported and the others still run:
#
#   1. tests    the `gpu`-marked tests (CUDA kernels against the reference on the device,
#               every model training on the GPU to the numpy losses)  -> OUT/gpu_tests.xml
#   2. kernels  every CUDA kernel version, validated then timed against cuBLAS / torch /
#               SDPA (benchmarks/bench_kernels_gpu.py)                 -> OUT/kernels_gpu.{json,png}
#   3. train    a training step of each model: minivl cuda vs torch cuda vs minivl cpu
#               (benchmarks/bench_train_gpu.py)                        -> OUT/train_gpu.{json,png}
#   4. tour     `minivl tour --quick --use cuda` over a few stages (GPU_SH_TOUR, default
#               gpt,vit), the whole training path on the GPU            -> OUT/tour/
#
# and OUT/gpu_sh.json: which parts passed, their seconds, the card. Each part's output is in
# OUT/<part>.log. Installs only what is missing and needed: CuPy for CUDA 13 (the `gpu` extra)
# and minivl itself; never torch (a multi-GB download: without a CUDA torch the torch columns
# are skipped). --dry-run needs no GPU: it checks that every entry point imports and parses
# its arguments, and installs nothing.
#
# Environment: PYTHON (default python3), KERNELS_FULL=1 for the full kernel sizes (~3 min on
# its own), GPU_SH_MODELS (default: all seven models), GPU_SH_TOUR (default "gpt,vit";
# empty skips part 4).

set -euo pipefail

DRY_RUN=0
OUT_DIR=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        -*) echo "gpu.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
        *) OUT_DIR="$arg" ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT_DIR="${OUT_DIR:-${OUT:-benchmarks/results/gpu}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PY="${PYTHON:-python3}"
MODELS="${GPU_SH_MODELS:-clip gpt bert vit dalle llava vilbert}"
TOUR="${GPU_SH_TOUR-gpt,vit}"
LOG="$OUT_DIR/gpu_sh.log"
: > "$LOG"
STARTED=$SECONDS
declare -A PART_STATUS PART_SECONDS

log() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# run_part NAME LIMIT_S CMD...: run CMD under a time limit, log to OUT/NAME.log, never abort the script
run_part() {
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS rc=0
    log "part $name: $* (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1 || rc=$?
    PART_SECONDS[$name]=$((SECONDS - start))
    if [[ $rc -eq 0 ]]; then
        PART_STATUS[$name]="ok"
        log "part $name: ok (${PART_SECONDS[$name]} s)"
    else
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then PART_STATUS[$name]="timeout"; else PART_STATUS[$name]="failed (exit $rc)"; fi
        log "part $name: ${PART_STATUS[$name]} after ${PART_SECONDS[$name]} s; last lines of $OUT_DIR/$name.log:"
        tail -n 15 "$OUT_DIR/$name.log" | sed 's/^/    /' | tee -a "$LOG"
    fi
}

# ---------------------------------------------------------------- environment
if ! command -v "$PY" > /dev/null; then
    log "no Python interpreter '$PY' (set PYTHON=...)"; exit 1
fi
log "repo $REPO, out $OUT_DIR, python $("$PY" -c 'import sys; print(sys.version.split()[0])'), dry run: $DRY_RUN"

have() { "$PY" -c "import $1" > /dev/null 2>&1; }

if [[ $DRY_RUN -eq 0 ]]; then
    if ! have minivl || ! have numba; then
        log "minivl is not importable: pip install -e . (offline first, then with its CPU dependencies)"
        "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | tail -n 5 | tee -a "$LOG" || true
        have minivl && have numba \
            || "$PY" -m pip install --quiet -e . 2>&1 | tail -n 5 | tee -a "$LOG" || log "pip install -e . failed"
    fi
    if ! have cupy; then
        log "CuPy missing: pip install cupy-cuda13x (the gpu extra, CUDA 13)"
        "$PY" -m pip install --quiet "cupy-cuda13x>=14" 2>&1 | tail -n 5 | tee -a "$LOG" || log "pip install cupy-cuda13x failed"
    fi
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG" || true
    else
        log "nvidia-smi not found: is there a GPU?"
    fi
    have torch && "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || log "no CUDA torch: the torch / SDPA columns are skipped (nothing installed for them)"
    have transformers || log "transformers missing: part 'train' needs it (pip install transformers)"
fi

# ---------------------------------------------------------------- the three parts
# shellcheck disable=SC2086  # MODELS is a word list on purpose
if [[ $DRY_RUN -eq 1 ]]; then
    run_part tests 120 "$PY" -m pytest -n 0 -q -m gpu --collect-only tests/kernels/test_cuda_kernels.py tests/test_gpu_train.py
    run_part kernels 60 "$PY" benchmarks/bench_kernels_gpu.py --dry-run --quick \
        --json "$OUT_DIR/kernels_gpu.json" --png "$OUT_DIR/kernels_gpu.png"
    run_part train 120 "$PY" benchmarks/bench_train_gpu.py --dry-run --out "$OUT_DIR" --models $MODELS
    [[ -n "$TOUR" ]] && run_part tour 60 "$PY" -m minivl tour --help
else
    run_part tests 100 "$PY" -m pytest -n 0 -q -m gpu -p no:cacheprovider --junitxml="$OUT_DIR/gpu_tests.xml" \
        tests/kernels/test_cuda_kernels.py tests/test_gpu_train.py
    KERNEL_ARGS=(--quick)
    [[ "${KERNELS_FULL:-0}" == "1" ]] && KERNEL_ARGS=()
    run_part kernels 150 "$PY" benchmarks/bench_kernels_gpu.py "${KERNEL_ARGS[@]}" \
        --json "$OUT_DIR/kernels_gpu.json" --png "$OUT_DIR/kernels_gpu.png"
    run_part train 120 "$PY" benchmarks/bench_train_gpu.py --out "$OUT_DIR" --models $MODELS
    [[ -n "$TOUR" ]] && run_part tour 150 "$PY" -m minivl tour --quick --use cuda --only "$TOUR" \
        --out "$OUT_DIR/tour" --no-progress
fi

# ---------------------------------------------------------------- summary
FAILED=0
SUMMARY="{"
PARTS="tests kernels train"
[[ -n "$TOUR" ]] && PARTS+=" tour"
for name in $PARTS; do
    [[ "${PART_STATUS[$name]}" == "ok" ]] || FAILED=1
    SUMMARY+="\"$name\": {\"status\": \"${PART_STATUS[$name]}\", \"seconds\": ${PART_SECONDS[$name]}}, "
done
CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1 || true)"
SUMMARY+="\"gpu\": \"${CARD:-none}\", \"dry_run\": $([[ $DRY_RUN -eq 1 ]] && echo true || echo false), "
SUMMARY+="\"total_seconds\": $((SECONDS - STARTED))}"
echo "$SUMMARY" > "$OUT_DIR/gpu_sh.json"
log "done in $((SECONDS - STARTED)) s: $SUMMARY"
exit $FAILED
