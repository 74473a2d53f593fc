#!/usr/bin/env bash
# Compile-check the `cuda` feature on a machine without a GPU or CUDA toolkit: the
# toolkit comes from scripts/cuda-toolkit.sh (candle's kernels compile with its nvcc:
# about 9 minutes on 2 cores the first time). Not part of .ci/run for that cost.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
    toolkit=$(scripts/cuda-toolkit.sh)
    eval "$toolkit"
fi
exec cargo check --release --features cuda --all-targets
