#!/usr/bin/env bash
# A candidate for the bundled demo weights, not shipped (BENCHMARKS.md, thirty-ninth
# session): the network reads a 150 mm square centred on the lumbar spine of each view
# (`train --framing spine`, src/model/framing.rs): ~0.6 mm a pixel at 256 px, so cortex
# and trabecular texture reach it. Written to var/demo-spine/, models/ untouched.
# One run from scratch, 30 epochs of 2,000 images, on 2,280 studies (4,560 images) of
# twenty-one independently written generators (scripts/phantoms/README.md):
#   osteoscreen synth   400 DX studies (seed 11, 640 x 800)
#   phantoms A-T        94 studies each: 24 of seed 4343 (as scripts/fit-polarity.sh makes
#                       them, full size), 35 of seed 5353 and 35 of seed 5454 (one worker,
#                       shrunk by shrink.py)
# Then the card's covariate model (fitted by train on its validation patients, whose ages
# track T far more than patients' do) is dropped, so the daemon reads the radiographs
# alone, and the read-out (`osteoscreen readout --site-adapt`) is fitted on phantoms U and
# V (120 studies each), generators training never saw, each read as given and adapted to
# itself. To ship it: copy the pair into models/ and run scripts/fit-polarity.sh.
# EXTRA_SEEDS="6565 6666 ...": 35 more studies of each of A-T per seed listed (one worker,
# shrunk), the same schedule, written to var/demo-spine-more/ (BENCHMARKS.md, forty-second
# session: does a generalist that saw more of each generator read unseen ones better?).
# About two hours on 2 cores (~45 minutes generating, ~75 training). The phantoms need
# Python 3 with numpy, scipy, pillow and pydicom: installed into var/phantom-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
data=var/demo-train
source scripts/phantoms/common.sh
mkdir -p "$data"
osteoscreen() { cargo run --release -- "$@"; }
extra=(${EXTRA_SEEDS:-}) extra_n=35
per=$((94 + extra_n * ${#extra[@]}))
out=var/demo-spine ckpt=var/demo-checkpoint-spine
[ ${#extra[@]} -eq 0 ] || out=var/demo-spine-more ckpt=var/demo-checkpoint-spine-more
folders=()
# generator, seed, studies, shrink (yes/no): the folder (its name names the patients,
# mix_manifest.py: keep it), made when missing, with one worker; seed 4343 with the
# generators' default, as scripts/fit-polarity.sh makes it.
phantom() {
    local workers=1
    [ "$2" = 4343 ] && workers=""
    make_phantoms "$1" "$data/ph$1-$2" "$3" "$2" "$workers" "$4"
    folders+=("$data/ph$1-$2")
}
[ -f "$data/synth-11/manifest.csv" ] ||
    osteoscreen synth --out "$data/synth-11" --studies 400 --modality dx --size 640x800 --seed 11
for g in a b c d e f g h i j k l m n o p q r s t; do
    phantom "$g" 4343 24 no
    phantom "$g" 5353 35 yes
    phantom "$g" 5454 35 yes
    for s in "${extra[@]}"; do phantom "$g" "$s" "$extra_n" yes; done
done
"$py" scripts/phantoms/mix_manifest.py "$data/manifest-spine.csv" "$data/synth-11" 400 "${folders[@]}"
osteoscreen train --data "$data/manifest-spine.csv" --framing spine --processing multiscale \
    --out "$out" --name osteoscreen-xray-demo --checkpoint-dir "$ckpt" \
    --epochs 30 --images-per-epoch 2000 --batch-size 16 --lr 2e-3 --patience 30 --seed 11 \
    --val-fraction 0.1 --test-fraction 0.05 --device cpu \
    --data-description "synthetic, twenty-one independently written generators: osteoscreen synth 400 DX studies (seed 11) and phantoms A-T $per studies each (seeds 4343 24, 5353 35, 5454 35${extra[*]:+, ${extra[*]} $extra_n each}; scripts/phantoms), both views, each read as a 150 mm square on the lumbar spine; trained on synthetic data; not validated on patients" \
    --intended-use "demonstration of the pipeline only: trained on synthetic data; not validated on patients; not for clinical use" \
    --limitations "trained on synthetic data; not validated on patients. Synthetic radiographs from twenty-one generators; real radiographs differ in anatomy, exposure, processing and disease. Per-image out-of-distribution flag from the feature profile."
card=$out/osteoscreen-xray-demo.json
"$py" -c 'import json, sys; c = json.load(open(sys.argv[1])); c.pop("covariates", None); json.dump(c, open(sys.argv[1], "w"), indent=2)' "$card"
folders=()
for s in 9101 9102; do phantom u $s 60 yes; done
"$py" scripts/phantoms/mix_manifest.py "$data/manifest-u.csv" "$data/synth-11" 0 "${folders[@]}"
folders=()
for s in 9201 9202; do phantom v $s 60 yes; done
"$py" scripts/phantoms/mix_manifest.py "$data/manifest-v.csv" "$data/synth-11" 0 "${folders[@]}"
osteoscreen readout --model "$out/osteoscreen-xray-demo.safetensors" \
    --data "$data/manifest-u.csv" --more-data "$data/manifest-v.csv" --site-adapt --device cpu \
    --description "phantoms U and V (scripts/phantoms/phantom_u.py seeds 9101, 9102; phantom_v.py seeds 9201, 9202: 240 studies, 80 per class), generators training never saw"
