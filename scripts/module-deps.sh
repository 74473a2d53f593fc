#!/usr/bin/env bash
# Each top-level module of src/ and the other top-level modules it imports (`crate::x`
# paths), so that an upward import or a cycle shows at a glance. Read-only.
set -euo pipefail
cd "$(dirname "$0")/.."
for entry in src/*; do
  m=$(basename "$entry" .rs)
  case "$m" in lib | main | cli) continue ;; esac
  if [ -d "$entry" ]; then files=$(find "$entry" -name '*.rs'); else files=$entry; fi
  # shellcheck disable=SC2086
  deps=$(grep -ho 'crate::[a-z_]*' $files | sed 's/crate:://' | sort -u | grep -vx "$m" | tr '\n' ' ' || true)
  printf '%-10s -> %s\n' "$m" "$deps"
done
