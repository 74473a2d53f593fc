#!/usr/bin/env bash
# The GPU path against PyTorch CUDA on the same GPU (benches/gpu.rs): outputs checked first,
# then inference at batch 1/8/64 and a training step, alternating candle and PyTorch.
# Needs a GPU and a python3 with PyTorch CUDA (OSTEO_TORCH_PYTHON to choose another one).
# Builds with an installed CUDA toolkit, else with scripts/cuda-toolkit.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
    toolkit=$(scripts/cuda-toolkit.sh)
    eval "$toolkit"
    # cuBLAS, cuRAND and the runtime from the same toolkit at run time (never its libcuda
    # stub).
    export LD_LIBRARY_PATH="$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"${OSTEO_TORCH_PYTHON:-python3}" -c 'import torch, numpy, safetensors; assert torch.cuda.is_available(), "PyTorch sees no GPU"'
exec cargo bench --features cuda --bench gpu
