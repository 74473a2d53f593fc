# Sourced by the scripts that run the phantoms (from the repository root): sets $py to a
# Python with numpy, scipy, pillow and pydicom, made in var/phantom-venv on first use, and
# defines make_phantoms.
py=var/phantom-venv/bin/python
if ! "$py" -c 'import numpy, scipy, PIL, pydicom' 2>/dev/null; then
    python3 -m venv var/phantom-venv
    var/phantom-venv/bin/pip install --quiet numpy scipy pillow pydicom
fi

# make_phantoms GENERATOR DIR STUDIES SEED WORKERS SHRINK: DIR made by phantom_GENERATOR.py
# when it has no manifest yet. WORKERS: a count, or "" for the generator's default; the
# same count gives the same images, so a script keeps the count its sets were made with
# (A, G and V always run in one process and take no count). SHRINK: yes to block-average
# the images to at most 1100 pixels (shrink.py), no to keep them full size.
make_phantoms() {
    local g=$1 dir=$2 studies=$3 seed=$4 workers=() shrink=$6
    [ -f "$dir/manifest.csv" ] && return 0
    case $g in a | g | v) ;; *) [ -z "$5" ] || workers=(--workers "$5") ;; esac
    "$py" "scripts/phantoms/phantom_$g.py" "$dir" "$studies" "$seed" "${workers[@]}"
    [ "$shrink" = no ] || "$py" scripts/phantoms/shrink.py "$dir"
}
