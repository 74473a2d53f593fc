#!/usr/bin/env bash
# Run the daemon with its embedded defaults (DICOM on 0.0.0.0:11112, AE OSTEOSCREEN,
# spool + SQLite in ./var/osteoscreen). Building needs Debian's cmake (for CharLS, the
# JPEG-LS decoder); it is installed here when missing (needs root). Extra arguments go to
# `osteoscreen` before `serve`, e.g. `./scripts/serve.sh --config my.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake
fi
exec cargo run --release -- "$@" serve
