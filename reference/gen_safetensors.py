"""Fixtures for src/weights: safetensors files written by the real `safetensors` library, and the values
torch decodes them to.

Writes under test/fixtures/safetensors/:
  dtypes.safetensors      one tensor per dtype (special values for the float types), metadata {"format": "pt"}
  expected.safetensors    torch's float32 upcast (`.float()`) of every float tensor above, and of every
                          tensor of the sharded checkpoint (named "ckpt/<key>")
  encode.safetensors      float32 inputs ("src") and torch's `.half()` / `.bfloat16()` of them
  expected.json           per tensor of dtypes.safetensors: dtype, shape, and for F32 / integer / BOOL
                          tensors the exact values (F32 as uint32 bit patterns); the file metadata
  sharded/                a tiny LlamaForCausalLM (bf16) saved by transformers with max_shard_size, so two
                          shards + model.safetensors.index.json with transformers' own naming

Deterministic: fixed seeds, single-key metadata (the Rust writer orders metadata keys by hash), and
sorted JSON.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "safetensors"

F16_SPECIALS = [
    0x0000, 0x8000,  # +0, -0
    0x0001, 0x8001, 0x03FF,  # subnormals: min, -min, max
    0x0400, 0x7BFF, 0xFBFF,  # min normal, max, lowest
    0x7C00, 0xFC00,  # +inf, -inf
    0x7E00, 0xFE00, 0x7C01, 0x7FFF,  # NaNs (quiet, negative, signalling, all-ones payload)
    0x3C00, 0x3555, 0xC000,  # 1, ~1/3, -2
]
BF16_SPECIALS = [
    0x0000, 0x8000,
    0x0001, 0x8001, 0x007F,  # subnormals
    0x0080, 0x7F7F, 0xFF7F,  # min normal, max, lowest
    0x7F80, 0xFF80,
    0x7FC0, 0xFFC0, 0x7F81, 0x7FFF,
    0x3F80, 0x3EAB, 0xC000,
]
STRIDE = 61  # plus every 61st bit pattern: covers all exponents with varied mantissas


def bit_patterns(specials):
    return np.array(specials + list(range(0, 65536, STRIDE)), dtype=np.uint16)


def f16_tensor():
    return torch.from_numpy(bit_patterns(F16_SPECIALS).view(np.float16).copy())


def bf16_tensor():
    return torch.from_numpy(bit_patterns(BF16_SPECIALS).view(np.int16).copy()).view(torch.bfloat16)


def f64_tensor(gen):
    specials = [
        0.0, -0.0, 1 / 3, 0.1, -2.5,
        1 + 2.0**-24, 1 + 3 * 2.0**-24,  # ties in float32: to even (down), to even (up)
        1e-40, 1e-46, 1e-50,  # float32 subnormal, rounds to min subnormal / to 0
        3.4028234663852886e38, 3.5e38, -1e39,  # float32 max, overflow to inf
        float("inf"), float("-inf"), float("nan"),
    ]
    rand = torch.randn(48, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(-20, 20, (48,), generator=gen)
    return torch.cat([torch.tensor(specials, dtype=torch.float64), rand])


def f32_tensor(gen):
    specials = [0.0, -0.0, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, float("inf"), float("-inf"), float("nan"), 1.0]
    rand = torch.randn(14, generator=gen)
    return torch.cat([torch.tensor(specials, dtype=torch.float32), rand]).reshape(4, 3, 2)


def f8_tensor(dtype):
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype)


def int_tensors():
    i32 = [-(2**31), 2**31 - 1, 0, -1, 123456789, -42]
    return {
        "i64": torch.tensor(i32, dtype=torch.int64).reshape(2, 3),
        "i64_big": torch.tensor([0, 2**31], dtype=torch.int64),
        "i64_small": torch.tensor([5, -(2**31) - 1], dtype=torch.int64),
        "i32": torch.tensor(i32, dtype=torch.int32),
        "i16": torch.tensor([-(2**15), 2**15 - 1, 0, -7], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -3], dtype=torch.int8),
        "u64": torch.tensor([0, 2**31 - 1, 5], dtype=torch.uint64),
        "u64_big": torch.tensor([2**32], dtype=torch.uint64),
        "u32": torch.tensor([0, 2**31 - 1, 77], dtype=torch.uint32),
        "u32_big": torch.tensor([2**31], dtype=torch.uint32),
        "u16": torch.tensor([0, 65535, 1234], dtype=torch.uint16),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
    }


def dtype_tensors():
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "f16": f16_tensor(),
        "bf16": bf16_tensor(),
        "f64": f64_tensor(gen),
        "f32": f32_tensor(gen),
        "f32_scalar": torch.tensor(2.5, dtype=torch.float32),
        "f32_empty": torch.zeros(0, 3, dtype=torch.float32),
        "f8_e4m3": f8_tensor(torch.float8_e4m3fn),
        "f8_e5m2": f8_tensor(torch.float8_e5m2),
    }
    tensors.update(int_tensors())
    return tensors


def encode_sources(gen):
    """float32 values for the float16 / bfloat16 encoders, with many exact ties."""
    h = torch.arange(0, 0x7BFF, 97, dtype=torch.int32).to(torch.int16).view(torch.float16).double()
    h_next = (torch.arange(0, 0x7BFF, 97, dtype=torch.int32) + 1).to(torch.int16).view(torch.float16).double()
    f16_ties = ((h + h_next) / 2).float()  # exact halfway points between neighbouring float16 values
    bf16_ties = (torch.randint(0, 2**15, (64,), generator=gen, dtype=torch.int32) * 65536 + 0x8000).view(torch.float32)
    specials = torch.tensor(
        [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 2.0**-25, 3 * 2.0**-25, 2.0**-26, 2.0**-24, 6e-8,
         3.3895314e38, 3.4028235e38, float("inf"), float("-inf"), float("nan"), 1.0 + 2.0**-11],
        dtype=torch.float32,
    )
    scales = 2.0 ** torch.randint(-30, 20, (128,), generator=gen).float()
    rand = torch.randn(128, generator=gen) * scales
    return torch.cat([specials, f16_ties, bf16_ties, -bf16_ties[:16], rand])


def write_sharded(out_dir):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, max_shard_size="2KB")
    out_dir.mkdir()
    for f in sorted(tmp.iterdir()):
        if f.name.endswith(".safetensors") or f.name.endswith(".index.json"):
            shutil.copy(f, out_dir / f.name)
    shutil.rmtree(tmp)
    return {k: v.detach() for k, v in model.state_dict().items()}


def values_json(t):
    if t.dtype == torch.float32:
        return [v & 0xFFFFFFFF for v in t.reshape(-1).view(torch.int32).tolist()]
    if not t.is_floating_point():  # integers and bool
        return [int(v) for v in t.reshape(-1).tolist()]
    return None


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    tensors = dtype_tensors()
    save_file(tensors, OUT / "dtypes.safetensors", metadata={"format": "pt"})

    expected = {k: v.float() for k, v in tensors.items() if v.is_floating_point()}
    state = write_sharded(OUT / "sharded")
    expected.update({f"ckpt/{k}": v.float() for k, v in state.items()})
    save_file(expected, OUT / "expected.safetensors")

    src = encode_sources(torch.Generator().manual_seed(1))
    save_file({"src": src, "f16": src.half(), "bf16": src.bfloat16()}, OUT / "encode.safetensors")

    summary = {
        "metadata": {"format": "pt"},
        "tensors": {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape), "values": values_json(v)}
            for k, v in sorted(tensors.items())
        },
    }
    (OUT / "expected.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
