#!/usr/bin/env bash
# Reproduce the bundled demo weights (models/osteoscreen-xray-demo.safetensors + .json).
#
# A model trained on one generator learns that generator's look, not bone density: on
# radiographs drawn another way it called most studies normal. So the training set mixes
# six independently written generators (scripts/phantoms/README.md):
#   osteoscreen synth   1,200 studies (seed 11)
#   phantom A             300 studies (seeds 201, 202)
#   phantom B             600 studies (seeds 101-103)
#   phantom C             300 studies (seeds 7001-7003)
#   phantom D             300 studies (seeds 8001-8003)
#   phantom E             300 studies (seeds 6001-6003)
# then `osteoscreen train` on the CPU with the options below; at its end train fits the
# card's covariate model (the radiographs combined with the age) on the validation
# patients. The same seeds give the same weights on the same build. About three hours on
# 2 cores (~70 generating, ~95 training); the images (~6 GB after shrink.py) and
# checkpoints go to var/. The phantoms need Python 3
# with numpy, scipy, pillow and pydicom: installed into var/phantom-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
data=var/demo-train
py=var/phantom-venv/bin/python
if ! "$py" -c 'import numpy, scipy, PIL, pydicom' 2>/dev/null; then
    python3 -m venv var/phantom-venv
    var/phantom-venv/bin/pip install --quiet numpy scipy pillow pydicom
fi
mkdir -p "$data"
if [ ! -f "$data/synth/manifest.csv" ]; then
    cargo run --release -- synth --out "$data/synth" --studies 1200 --modality dx --size 640x800 --seed 11
fi
# generator, seed, studies
phantom() {
    local dir="$data/ph$1-$2"  # the folder names the patients (mix_manifest.py): keep it
    if [ ! -f "$dir/manifest.csv" ]; then
        # One worker: the order of the random draws, and so the images, as when trained.
        "$py" "scripts/phantoms/phantom_$1.py" "$dir" "$3" "$2" --workers 1
        "$py" scripts/phantoms/shrink.py "$dir"
    fi
    folders+=("$dir")
}
folders=()
for s in 201 202; do phantom a $s 150; done
for s in 101 102 103; do phantom b $s 200; done
for s in 7001 7002 7003; do phantom c $s 100; done
for s in 8001 8002 8003; do phantom d $s 100; done
for s in 6001 6002 6003; do phantom e $s 100; done
"$py" scripts/phantoms/mix_manifest.py "$data/manifest-6.csv" "$data/synth" 1200 "${folders[@]}"
exec cargo run --release -- train --data "$data/manifest-6.csv" --out models --name osteoscreen-xray-demo \
    --checkpoint-dir var/demo-checkpoint --epochs 40 --images-per-epoch 2000 --batch-size 16 \
    --lr 1e-3 --patience 12 --seed 11 --device cpu \
    --data-description "synthetic, six independently written generators: osteoscreen synth 1200 studies (seed 11), phantom A 300, B 600, C 300, D 300, E 300 (scripts/phantoms, scripts/train-demo.sh); trained on synthetic data; not validated on patients" \
    --intended-use "demonstration of the pipeline only: trained on synthetic data; not validated on patients; not for clinical use" \
    --limitations "trained on synthetic data; not validated on patients. Synthetic radiographs from six generators; real radiographs differ in anatomy, exposure, processing and disease. Per-image out-of-distribution flag from the feature profile." \
    "$@"
