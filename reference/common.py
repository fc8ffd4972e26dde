"""Shared helpers of the reference generators: determinism, fixture paths, case files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "test" / "fixtures"


def set_deterministic() -> None:
    """Single thread, deterministic kernels: every run must write the same bytes."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def stable_seed(*parts: str) -> int:
    """A seed derived from strings only (Python's hash() is salted per process, so it is not used)."""
    h = 2166136261
    for b in "\x1f".join(parts).encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64", np.dtype("u1"): "U8", np.dtype("i1"): "I8"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file with a fully deterministic header: safetensors' own writer serialises __metadata__
    from a hash map whose order changes from run to run, so the bytes would too. Tensors and metadata keys are
    written in sorted order; the header is padded with spaces to a multiple of 8 bytes, as the format allows."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        if a.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {a.dtype}")
        raw = a.tobytes(order="C")
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def save_case(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Writes one case file: contiguous CPU float32/int64 tensors, string metadata."""
    out = {}
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        if t.dtype not in (torch.float32, torch.int64):
            raise TypeError(f"{name}: unexpected dtype {t.dtype}")
        out[name] = t.numpy()
    for k, v in metadata.items():
        if not isinstance(v, str):
            raise TypeError(f"metadata {k} must be a string, found {type(v).__name__}")
    write_safetensors(path, out, metadata)


def dumps(obj) -> str:
    """Compact, deterministic JSON for metadata values."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """top1 - top2 of the last dimension (float64)."""
    top = torch.topk(logits.double(), 2, dim=-1).values
    return top[..., 0] - top[..., 1]
