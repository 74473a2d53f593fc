#!/usr/bin/env bash
# Analysis benchmarks: CT analysis time and the X-ray model's latency against the same
# network in PyTorch CPU (benches/peers/xray_torch.py), same thread count. Installs PyTorch into
# benches/peers/.venv on first use (PyPI's Linux wheel; about 5 GB with its CUDA libraries, used
# here on the CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! benches/peers/.venv/bin/python -c 'import torch, numpy, safetensors, pydicom' 2>/dev/null; then
    python3 -m venv benches/peers/.venv
    benches/peers/.venv/bin/pip install --quiet torch numpy safetensors pydicom
fi
exec cargo bench --bench analysis
