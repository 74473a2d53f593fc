#!/usr/bin/env bash
# Reproduce the bundled card's polarity probe (`osteoscreen polarity`, README "Grey levels
# against the header"): every independently written generator the project has, each a set
# held out in turn, then the probe fitted on all of them written into
# models/osteoscreen-xray-demo.json (the weights untouched). The sets:
#   osteoscreen synth   30 DX studies (seed 4243), 15 CR studies (seed 4244)
#   phantoms A-T        24 studies each (seed 4343)
#   phantoms U, V       60 studies each (seeds 9101, 9201; as scripts/train-demo.sh's
#                       read-out step makes them)
# Labels are not used: each image is read as its header says and inverted. About 30
# minutes on 2 cores, almost all of it generating; the images go to var/polarity/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=var/polarity
source scripts/phantoms/common.sh
mkdir -p "$data"
sets=()
synth() {
    local dir="$data/synth-$1-$3"
    [ -f "$dir/manifest.csv" ] || cargo run --release -- synth --out "$dir" --studies "$2" --modality "$1" --seed "$3"
    sets+=(--data "$dir")
}
synth dx 30 4243
synth cr 15 4244
for g in a b c d e f g h i j k l m n o p q r s t; do
    make_phantoms "$g" "$data/ph$g" 24 4343 "" no
    sets+=(--data "$data/ph$g")
done
for gs in u:9101 v:9201; do
    g=${gs%:*} seed=${gs#*:}
    dir="$data/ph$g-$seed"
    make_phantoms "$g" "$dir" 60 "$seed" 1 yes
    sets+=(--data "$dir")
done
cargo run --release -- polarity --model models/osteoscreen-xray-demo.safetensors --device cpu "${sets[@]}"
