# Sourced by the scripts that run the phantoms (from the repository root): sets $py to a
# Python with numpy, scipy, pillow and pydicom, made in var/phantom-venv on first use.
py=var/phantom-venv/bin/python
if ! "$py" -c 'import numpy, scipy, PIL, pydicom' 2>/dev/null; then
    python3 -m venv var/phantom-venv
    var/phantom-venv/bin/pip install --quiet numpy scipy pillow pydicom
fi
