#!/usr/bin/env bash
# The daemon's own site adaptation ([model] site_adaptation), end to end: phantom U (a
# generator no stage of the bundled weights saw) sent with DCMTK's storescu to `serve`,
# seed 9101 first (60 studies, 120 radiographs: the site's first radiographs), seed 9102
# once those have ended (a site's studies trickle in). Each study's class comes from the
# job's stored Finding summary, its truth from the phantom's manifest; accuracy per seed,
# adaptation off against on (after 64 radiographs, the default, and after 120). The
# phantoms need numpy, scipy, pillow and pydicom: installed into var/phantom-venv on first
# use, like scripts/train-demo.sh. About five minutes on 2 cores, and five more to generate U.
# PHANTOM=v reads phantom V (seeds 9201, 9202) instead, the generator the card's read-out
# was checked on; READOUT=false reports the network's own result ([model] readout).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/phantoms/common.sh
# The test suite's build (dependencies at -O3): accuracy is the point, the time the log
# gives for an adaptation is indicative.
cargo build
bin="${CARGO_TARGET_DIR:-target}/debug/osteoscreen"
phantom=${PHANTOM:-u}
case "$phantom" in
u) seeds="9101 9102" ;;
v) seeds="9201 9202" ;;
*) echo "PHANTOM must be u or v" >&2; exit 2 ;;
esac
for s in $seeds; do
    make_phantoms "$phantom" "var/demo-train/ph$phantom-$s" 60 "$s" 1 yes
done

# adaptation (true/false), radiographs to adapt on
run() {
    local work port pid
    work=$(mktemp -d)
    port=$((20000 + RANDOM % 20000))
    OSTEOSCREEN__STORAGE__DIR="$work/var" OSTEOSCREEN__DICOM__LISTEN="127.0.0.1:$port" \
        OSTEOSCREEN__HTTP__LISTEN="127.0.0.1:$((port + 1))" \
        OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS=1 OSTEOSCREEN__MODEL__SITE_ADAPTATION="$1" \
        OSTEOSCREEN__MODEL__READOUT="${READOUT:-true}" \
        OSTEOSCREEN__MODEL__SITE_ADAPTATION_IMAGES="$2" "$bin" serve >"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 60); do
        echoscu -aec OSTEOSCREEN 127.0.0.1 "$port" 2>/dev/null && break
        sleep 1
    done
    local want=0
    for s in $seeds; do
        for p in var/demo-train/ph$phantom-$s/*/; do
            storescu -aet MODALITY -aec OSTEOSCREEN 127.0.0.1 "$port" "$p"*.dcm
        done
        want=$((want + 60))
        for _ in $(seq 1 600); do
            n=$(sqlite3 "$work/var/osteoscreen.sqlite" \
                "select count(*) from jobs where state in ('done','not_applicable','dead')")
            [ "$n" -ge "$want" ] && break
            sleep 2
        done
    done
    kill "$pid"
    wait "$pid" || true
    sqlite3 -separator , "$work/var/osteoscreen.sqlite" \
        "select study_uid, json_extract(finding, '\$.class') from jobs" >"$work/classes.csv"
    local seconds
    seconds=$(grep -o 'seconds="[0-9.]*"' "$work/log" | tr '\n' ' ' || true)
    "$py" - "$work/classes.csv" "site_adaptation=$1 after $2" "$seconds" "$phantom" $seeds <<'PY'
import csv, sys
import pydicom
classes = dict(line.strip().split(",") for line in open(sys.argv[1]))
names = {"normal": 0, "osteopenia": 1, "osteoporosis": 2}
row = [sys.argv[2]]
phantom = sys.argv[4]
for seed in sys.argv[5:]:
    root = f"var/demo-train/ph{phantom}-{seed}/"
    right = total = 0
    for r in csv.DictReader(open(root + "manifest.csv")):
        if r["view"] != "AP":
            continue
        uid = pydicom.dcmread(root + r["path"], stop_before_pixels=True).StudyInstanceUID
        total += 1
        right += names.get(classes.get(uid, ""), -1) == int(r["label"])
    row.append(f"{phantom.upper()} {seed}: {right / total:.3f} ({total} studies)")
print("  ".join(row) + (f"  adaptation took {sys.argv[3]}" if sys.argv[3] else ""))
PY
    rm -rf "$work"
}
echo "phantom ${phantom^^}, [model] readout = ${READOUT:-true}"
run false 64
run true 32
