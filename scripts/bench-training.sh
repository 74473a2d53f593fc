#!/usr/bin/env bash
# Training throughput: candle CPU (forward + backward + AdamW, images/s) against the same
# network in PyTorch CPU (benches/peers/xray_torch.py train), same thread count, same run.
# Installs PyTorch into benches/peers/.venv on first use (PyPI's Linux wheel, used on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! benches/peers/.venv/bin/python -c 'import torch, numpy, safetensors' 2>/dev/null; then
    python3 -m venv benches/peers/.venv
    benches/peers/.venv/bin/pip install --quiet torch numpy safetensors
fi
exec cargo bench --bench training
