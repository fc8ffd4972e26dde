"""Deterministic synthetic weights, keyed by checkpoint key name.

The same formula is implemented in TypeScript (src/weights/synthetic.ts); both must produce bit-identical
float32 values, so that a checkpoint too large to commit (the 7B-width slice) can be rebuilt on either side
from its key names and shapes alone.

Formula, for a tensor called `name` (its key as `save_pretrained` writes it) with shape `shape`:

  seed = FNV-1a 32-bit hash of the UTF-8 bytes of `name`
         (h = 2166136261; for each byte b: h = ((h XOR b) * 16777619) mod 2^32)

  for element i (row-major, 0-based; i < 2^32):
      h = (i * 0x9E3779B1 + seed)  mod 2^32
      h = h XOR (h >>> 16)
      h = (h * 0x85EBCA6B)         mod 2^32
      h = h XOR (h >>> 13)
      h = (h * 0xC2B2AE35)         mod 2^32
      h = h XOR (h >>> 16)
      u = (h >>> 8) / 2^24                       (exact, in [0, 1))
      r = 2 * u - 1                              (exact, in [-1, 1))
      value = float32(base + r * scale)          (r * scale and the sum in float64, one rounding to float32,
                                                  round-to-nearest-even; no fused multiply-add)

  base and scale depend on the name and the shape, checked in this order:
      1. 1-D, name ends with ".weight" and contains "norm"
         (LayerNorm / RMSNorm gains; "pre_layrnorm" contains "norm" too)   base 1, scale 0.1
      2. name ends with ".bias" (any rank)                                  base 0, scale 0.02
      3. any other 1-D tensor (e.g. "...class_embedding")                   base 0, scale 0.02
      4. everything else (rank >= 2): fan_in = product of all dims but the first
                                                                             base 0, scale = 1 / sqrt(fan_in)
         This covers embed_tokens [vocab, hidden] and lm_head [vocab, hidden] (scale 1/sqrt(hidden)),
         patch_embedding [out, 3, p, p] (fan_in 3*p*p) and position_embedding [positions, hidden].
      scale = 1 / sqrt(fan_in) is computed in float64 as 1.0 / math.sqrt(fan_in) (both operations are
      correctly rounded in IEEE arithmetic, so Python and JavaScript agree).
"""

from __future__ import annotations

import math

import numpy as np

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
_CHUNK = 1 << 22


def synthetic_seed(name: str) -> int:
    """FNV-1a 32-bit hash of the UTF-8 bytes of `name`."""
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFF
    return h


def synthetic_base_scale(name: str, shape: tuple[int, ...] | list[int]) -> tuple[float, float]:
    """The (base, scale) pair of the formula above for this tensor."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 1 and name.endswith(".weight") and "norm" in name:
        return 1.0, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.02
    if len(shape) <= 1:
        return 0.0, 0.02
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    return 0.0, 1.0 / math.sqrt(fan_in)


def _hash_block(start: int, count: int, seed: int) -> np.ndarray:
    """The 32-bit hashes of elements start .. start+count-1 (uint32 arithmetic wraps mod 2^32)."""
    i = np.arange(start, start + count, dtype=np.uint64).astype(np.uint32)
    h = i * np.uint32(0x9E3779B1) + np.uint32(seed)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def synthetic_weight(name: str, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    """The float32 tensor of the formula above, C-contiguous with the given shape."""
    shape = tuple(int(d) for d in shape)
    n = 1
    for d in shape:
        n *= d
    if n >= 1 << 32:
        raise ValueError(f"{name}: {n} elements; the formula indexes elements with 32 bits")
    seed = synthetic_seed(name)
    base, scale = synthetic_base_scale(name, shape)
    out = np.empty(n, dtype=np.float32)
    with np.errstate(over="ignore"):
        for start in range(0, n, _CHUNK):
            count = min(_CHUNK, n - start)
            h = _hash_block(start, count, seed)
            u = (h >> np.uint32(8)).astype(np.float64) / 16777216.0
            r = 2.0 * u - 1.0
            v = r * scale
            v += base
            out[start : start + count] = v.astype(np.float32)
    return out.reshape(shape)
