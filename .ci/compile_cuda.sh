#!/usr/bin/env bash
# Compile the CUDA sources with nvcc, as CI does on a machine with no GPU.
#
# Each source is built as a standalone object for Hopper (sm_90) and Ampere
# (sm_80; CUDA 13 dropped everything below sm_75), every warning and every
# register spill an error. Without NVRTC the explicit template instantiations
# at the end of each file are compiled, so every kernel the loader can ask for
# is built here.
#
# Usage: .ci/compile_cuda.sh [SOURCE.cu ...]     (default: kernels/cuda/*.cu)
# Environment: NVCC (default nvcc), CUDA_ARCHS (default "90 80"),
#              KEEP_DIR (keep nvcc's intermediate .ptx files there).
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${NVCC:-nvcc}"
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "compile_cuda: $NVCC not found" >&2
  exit 2
fi
sources=("$@")
[ ${#sources[@]} -eq 0 ] && sources=(kernels/cuda/*.cu)
gencode=()
for arch in ${CUDA_ARCHS:-90 80}; do
  gencode+=(-gencode "arch=compute_$arch,code=sm_$arch")
done
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
keep=()
if [ -n "${KEEP_DIR:-}" ]; then
  mkdir -p "$KEEP_DIR"
  keep=(--keep --keep-dir "$KEEP_DIR")
fi

echo "compile_cuda: $("$NVCC" --version | tail -n 2 | head -n 1), archs: ${CUDA_ARCHS:-90 80}"
status=0
for src in "${sources[@]}"; do
  if "$NVCC" -std=c++17 "${gencode[@]}" -Werror all-warnings -Xptxas -warn-spills "${keep[@]}" \
      -c "$src" -o "$out/$(basename "$src" .cu).o"; then
    echo "compile_cuda: ok     $src"
  else
    echo "compile_cuda: FAILED $src" >&2
    status=1
  fi
done
exit $status
