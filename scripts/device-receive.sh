#!/usr/bin/env bash
# On a GPU machine: keeps the parts a transfer carried (files under SOURCE, e.g.
# artifacts/ort-cuda-parts) in DEST (default $HOME/cqd-ort-parts), where the next transfers add theirs
# and scripts/gpu-loop-check.sh joins them. Prints what DEST holds and whether every part listed in
# its SHA256SUMS has arrived intact.
set -euo pipefail
SOURCE="${1:?usage: device-receive.sh SOURCE_DIR [DEST_DIR]}"
DEST="${2:-$HOME/cqd-ort-parts}"
mkdir -p "$DEST"
cp -f "$SOURCE"/* "$DEST"/
ls -la "$DEST"
if [ -f "$DEST/SHA256SUMS" ]; then
  (cd "$DEST" && sha256sum -c --ignore-missing SHA256SUMS)
  missing=$(cd "$DEST" && awk '{print $2}' SHA256SUMS | while read -r f; do [ -f "$f" ] || echo "$f"; done)
  if [ -n "$missing" ]; then echo "still to come: $missing"; else echo "all parts here"; fi
fi
