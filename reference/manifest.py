"""Writes test/fixtures/manifest.json: the reference environment's versions and, for every file under
test/fixtures (except the manifest itself), its size and sha256. Sorted and without timestamps, so the
manifest changes only when a fixture or a version does.

Run: /work/.venv-ref/bin/python reference/manifest.py      (the last step of `npm run reference`)
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES  # noqa: E402

MANIFEST = FIXTURES / "manifest.json"


def versions() -> dict[str, str]:
    import av
    import bitsandbytes
    import numpy
    import PIL
    import safetensors
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "pillow": PIL.__version__,
        "av": av.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    files = {}
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p != MANIFEST):
        rel = path.relative_to(FIXTURES).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": sha256(path)}
    manifest = {
        "command": "npm run reference",
        "versions": versions(),
        "total_bytes": sum(f["size"] for f in files.values()),
        "files": dict(sorted(files.items())),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{MANIFEST.relative_to(FIXTURES.parent.parent)}: {len(files)} files, {manifest['total_bytes']} bytes")


if __name__ == "__main__":
    main()
