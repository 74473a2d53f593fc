#!/usr/bin/env bash
# The service benchmark (benches/round_trip.rs): Orthanc -> osteoscreen -> Orthanc with 1
# and 8 sending associations, against Orthanc -> DCMTK storescp in the same run.
# Needs the test peers (scripts/test.sh installs them). DX=16 CT=4 set the study counts.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench round_trip
