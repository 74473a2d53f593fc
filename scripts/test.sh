#!/usr/bin/env bash
# The whole test suite, as the README gives it. Installs the real peers the tests talk to
# (DCMTK, dicom3tools, Orthanc + DICOMweb plugin) from Debian and highdicom (PyPI, in a
# venv under ~/.cache), then runs every test.
# Needs root for apt-get (CI and the dev machines run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

peers=(dcmtk dicom3tools orthanc orthanc-dicomweb cmake sqlite3 time systemd strace openssl)
missing=()
for p in "${peers[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test peers: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Fail loudly rather than skip: a test without its peer proves nothing.
for tool in storescu echoscu storescp dcmdump dcmodify dcmconv dcmdrle dciodvfy dsrdump dsr2xml \
  dcmj2pnm Orthanc time systemd-analyze strace openssl; do
  command -v "$tool" >/dev/null || { echo "missing peer tool: $tool" >&2; exit 1; }
done

# highdicom reads our SRs as an independent TID 1500 implementation; scipy (with
# highdicom's numpy and pydicom) runs the independent CT phantom generator.
venv="${OSTEOSCREEN_VENV:-$HOME/.cache/osteoscreen-venv}"
if ! "$venv/bin/python" -c 'import highdicom, scipy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet highdicom scipy
fi
export OSTEOSCREEN_PYTHON="$venv/bin/python"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
