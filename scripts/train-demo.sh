#!/usr/bin/env bash
# Reproduce the bundled demo weights (models/osteoscreen-xray-demo.safetensors + .json):
# 2,000 synthetic AP + lateral studies (seed 11), then `osteoscreen train` on the CPU with
# the options below. The same seed gives the same weights on the same build. About
# 40 minutes on 2 cores; the synthetic set (~4 GB) and checkpoints go to var/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=var/demo-train
if [ ! -f "$data/manifest.csv" ]; then
    cargo run --release -- synth --out "$data" --studies 2000 --modality dx --size 640x800 --seed 11
fi
exec cargo run --release -- train --data "$data" --out models --name osteoscreen-xray-demo \
    --checkpoint-dir var/demo-checkpoint --epochs 14 --images-per-epoch 1600 --batch-size 16 \
    --lr 1e-3 --patience 6 --seed 11 --device cpu \
    --data-description "synthetic: osteoscreen synth --modality dx --studies 2000 --size 640x800 --seed 11; trained on synthetic data; not validated on patients" \
    --intended-use "demonstration of the pipeline only: trained on synthetic data; not validated on patients; not for clinical use" \
    --limitations "trained on synthetic data; not validated on patients. Synthetic radiographs from one generator; real radiographs differ in anatomy, exposure, processing and disease. Per-image out-of-distribution flag from the feature profile." \
    "$@"
