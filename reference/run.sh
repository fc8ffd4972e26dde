#!/usr/bin/env bash
# Regenerates every fixture under test/fixtures from the pinned Python reference.
# Usage: npm run reference   (creates reference/.venv on first use; CPU only)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VIDEO_LLAVA_REF_VENV:-reference/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r reference/requirements.txt
fi
for script in reference/gen_*.py; do
  echo "== $script"
  "$VENV/bin/python" "$script"
done
"$VENV/bin/python" reference/manifest.py
