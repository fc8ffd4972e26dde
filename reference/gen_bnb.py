"""Reference fixtures for bitsandbytes 4-bit / 8-bit weights (issue 15), from bitsandbytes 0.50.2 on CPU.

Writes, deterministically (one thread), under test/fixtures/bnb/:

  quantize_4bit.safetensors  (a) bitsandbytes.functional.quantize_4bit on CPU for every case of CASES: inputs
        `input.<name>` (float32 values of a float32 / bfloat16 / float16 weight), and per case `<case>.packed`
        (uint8, bnb's nibble order), `<case>.absmax` (float32, or uint8 codes with double quantization),
        `<case>.nested_absmax`, `<case>.offset` (float32 [1]), `<case>.scales` (the float32 block scales bnb
        rebuilds from the double-quantized ones), `<case>.dequant` (dequantize_4bit as bitsandbytes defines it:
        its default backend, blocks over the flattened weight; widened to float32). Metadata `<case>`: JSON with
        the input, shape, dtype, quant type, block size, double quant, the packed quant-state JSON bnb saves, and
        whether bnb's CPU dequantize_4bit kernel agrees (see CPU FINDINGS). Also the tables: `nf4_code`,
        `fp4_code`, `fp4_argsort` (int64), `dynamic_map` (create_dynamic_map()).
  int8.safetensors           (a) Int8Params quantization (weight -> float16 -> int8_vectorwise_quant): per case
        `input.<case>`, `<case>.CB` (int8), `<case>.SCB`, `<case>.dequant` (int8_vectorwise_dequant).
  synthetic_7b.json          (a) at 7B width: sha256 of quantize_4bit / Int8Params outputs for the synthetic q_proj
        weight [4096, 4096] of reference/synthetic.py (float32 and rounded to bfloat16), so the inputs are not stored.
  torch_sum.safetensors      torch.sum / torch.mean of contiguous float32 vectors (|synthetic weight| of
        reference/synthetic.py, name "bnb.sum.<n>.bias", so the inputs are not stored), which double quantization
        uses for its offset; with this machine's CPU capability (AVX512) and, in a subprocess, ATEN_CPU_CAPABILITY=avx2
        (both give the 8-lane cascade sum: torch's sum kernel has no AVX512 build).
  tester-nf4-dq/             (b) the `tester` model (test/fixtures/models/tester) loaded with
        BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute float32) and saved by save_pretrained.
  tester-int8/               (b) the same with BitsAndBytesConfig(load_in_8bit=True).
  modules.json               which Linear modules transformers quantizes for several llm_int8_skip_modules.
  logits.safetensors         (c) logits of the two quantized models on the tester cases text_only and mixed
        (inputs read from test/fixtures/cases/tester), float32 compute; see CPU FINDINGS for which path ran.
  qlora.safetensors          (d) QLoRA: PEFT LoRA (the LoRA of gen_training.py: r=4, alpha=8, q_proj/v_proj of
        the decoder, A and B = 0.2 N(0,1)) on the frozen nf4 model, batch A of test/fixtures/training/batch:
        loss, logits and the gradient of every lora_A / lora_B.

CPU FINDINGS (bitsandbytes 0.50.2, torch 2.15, this machine: AVX512 with AVX512-BF16):
  * quantize_4bit runs bnb's default (PyTorch) kernel: blocks over the flattened weight, x * (1/absmax) for full
    blocks, x / absmax for the partial last block, torch.bucketize against the code midpoints.
  * double quantization: offset = absmax.mean() (torch's cascade sum), quantize_blockwise(absmax - offset, 256) runs
    the C kernel cquantize_blockwise_cpu_fp32 (a 65536-bin lookup table, not an exact nearest search).
  * dequantize_4bit runs the C kernel cdequantize_blockwise_cpu_{nf4,fp4}_*; its AVX512 path indexes the block
    scales per row (absmax[row * (K // blocksize) + k // blocksize]), which is wrong whenever K % 16 == 0 and
    K % blocksize != 0 (e.g. K = 32 with block size 64, every K < 64 that is a multiple of 16): those weights
    dequantize with the wrong scales. Odd K and block sizes >= 2048 fall back to the default kernel (right).
  * Linear4bit.forward in eval mode on an AVX512-BF16 CPU repacks the weight for a bf16 gemv kernel
    (_convert_weight_packed_for_cpu: absmax reshaped to [N, K // blocksize], N % 32 asserted, bf16 compute);
    on the tester (K = 32 < 64) it raises. So the 4-bit references here run bnb with that repacking switched off
    (support_avx512bf16_for_cpu = False) and its CPU dequantize_4bit kernel replaced by bnb's own default
    kernel: matmul_4bit = dequantize (flat blocks, float32) then torch linear in float32, checked equal to a
    plain dequantize-then-float32 model. The stock bnb CPU result is recorded (max |difference|) in metadata.
  * Linear8bitLt (LLM.int8) runs on CPU as is: activations to float16, int8 row-wise, outlier columns
    (|x| >= 6) in float32, int8 matmul (torch._int_mm), dequantized by row * col scales / 127^2.
    logits.safetensors holds that result and the dequantize-then-float32 one.

Run: reference/.venv/bin/python reference/gen_bnb.py      (or `npm run reference`)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bitsandbytes as bnb
import bitsandbytes.functional as F
import numpy as np
import torch
import transformers
from bitsandbytes.backends.default import ops as default_ops
from bitsandbytes.backends.utils import _get_4bit_code
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import BitsAndBytesConfig, VideoLlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, dumps, generator, set_deterministic, stable_seed, write_safetensors  # noqa: E402
from synthetic import synthetic_weight  # noqa: E402

OUT = FIXTURES / "bnb"
TESTER = FIXTURES / "models" / "tester"
TESTER_CASES = FIXTURES / "cases" / "tester"
TRAINING_BATCH = FIXTURES / "training" / "batch.safetensors"
NF4_DIR = OUT / "tester-nf4-dq"
INT8_DIR = OUT / "tester-int8"
LOGIT_CASES = ["text_only", "mixed"]
LORA = dict(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", lora_dropout=0.0)
LORA_INIT_STD = 0.2
F32 = np.float32

NF4_CONFIG = dict(
    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32
)
INT8_CONFIG = dict(load_in_8bit=True)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def meta_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------------
# (a) 4-bit inputs


def _bounds(quant_type: str) -> np.ndarray:
    code = F.get_4bit_type(quant_type, device="cpu")
    order = torch.argsort(code)
    return ((code[order[:-1]] + code[order[1:]]) / 2).numpy()


def _edge() -> np.ndarray:
    """[8, 64]: zero block, exact ties on the NF4 and FP4 midpoints (absmax 1), near-ties at absmax 3 (one
    float32 step either side), tiny and subnormal values, a constant block, a tiny absmax, random values."""
    g = np.random.default_rng(stable_seed("bnb", "edge"))
    w = np.zeros((8, 64), F32)
    ties = np.concatenate([_bounds("nf4"), _bounds("fp4")]).astype(F32)
    row = np.concatenate([[1.0], ties, -ties, [-0.0, -1.0]]).astype(F32)[:64]
    w[1, : len(row)] = row
    near = []
    for b in _bounds("nf4"):
        x = F32(b) * F32(3.0)
        near += [np.nextafter(x, F32(-9)), x, np.nextafter(x, F32(9))]
    near = np.array(near, F32)
    w[2, 0], w[2, 32] = 3.0, -3.0
    w[2, 1:32] = near[:31]
    w[2, 33:64] = -near[12:43]
    w[3, :8] = [1.0, 1e-3, -1e-3, 1e-40, -1e-40, 2.6e-3, -2.6e-3, 0.0026041667]
    w[3, 8:] = (g.standard_normal(56) * 1e-3).astype(F32)
    w[4, :] = 0.5
    w[5, :] = (g.standard_normal(64) * 1e-30).astype(F32)
    w[6, :] = (g.standard_normal(64) * 1e-2).astype(F32)
    w[6, 10] = 0.0
    w[7, :] = (g.standard_normal(64) * 0.1).astype(F32)
    return w


def _tail(name: str, zeros: bool) -> np.ndarray:
    """[1, 100] (one full block of 64 and a partial one of 36 at block size 64): the partial block holds exact ties
    (absmax 1) or, with zeros=True, is [1, 70] with an all-zero partial block of 6."""
    g = np.random.default_rng(stable_seed("bnb", name))
    if zeros:
        w = np.zeros((1, 70), F32)
        w[0, :64] = g.standard_normal(64).astype(F32)
        return w
    w = np.zeros((1, 100), F32)
    w[0, :64] = g.standard_normal(64).astype(F32)
    ties = np.concatenate([[1.0], _bounds("nf4")[:9], -_bounds("fp4")[:9], _bounds("fp4")[9:]]).astype(F32)
    w[0, 64 : 64 + len(ties)] = ties
    w[0, 64 + len(ties) :] = g.standard_normal(36 - len(ties)).astype(F32) * 0.3
    return w


def _recip_stress() -> np.ndarray:
    """[1, 296]: in every block (4 full blocks of 64 and a partial one of 40 at block size 64) the absmax sits first
    and the other values lie where x * float32(1/absmax) and x / absmax fall on different sides of a midpoint,
    so full blocks (reciprocal) and the partial block (division) must be computed as bnb does."""
    g = np.random.default_rng(stable_seed("bnb", "recip"))
    out = []
    for block, size in enumerate([64, 64, 64, 64, 40]):
        bounds = _bounds("nf4" if block % 2 == 0 else "fp4")
        while True:
            m = F32(g.uniform(0.5, 3.0))
            inv = F32(F32(1) / m)
            vals = []
            for b in bounds:
                x = F32(F32(b) * m)
                for _ in range(8):
                    for cand in (x, np.nextafter(x, F32(9)), np.nextafter(x, F32(-9))):
                        mul = F32(cand * inv)
                        div = F32(cand / m)
                        if (mul <= b) != (div <= b):
                            vals.append(cand)
                    x = np.nextafter(x, F32(9))
            vals = sorted(set(float(v) for v in vals))
            if len(vals) >= 4:
                break
        blk = np.resize(np.array(vals, F32), size - 1)
        signs = np.where(np.arange(size - 1) % 2 == 0, 1, -1).astype(F32)
        out.append(np.concatenate([[m], blk * signs]).astype(F32))
    return np.concatenate(out).reshape(1, -1)


def _randn(name: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    g = generator(stable_seed("bnb", name))
    return (torch.randn(shape, generator=g) * std).numpy()


def four_bit_inputs() -> dict[str, tuple[np.ndarray, str]]:
    """name -> (values as float32, dtype they are exact in)."""
    inputs = {
        "w37x32": (_randn("w37x32", (37, 32), 0.2), "float32"),
        "w32x37": (_randn("w32x37", (32, 37), 0.2), "float32"),
        "w5x7": (_randn("w5x7", (5, 7), 1.0), "float32"),
        "edge": (_edge(), "float32"),
        "tail_ties": (_tail("tail_ties", False), "float32"),
        "tail_zero": (_tail("tail_zero", True), "float32"),
        "recip": (_recip_stress(), "float32"),
        "w8x300": (_randn("w8x300", (8, 300), 2.0), "float32"),
        "w40x260": (_randn("w40x260", (40, 260), 0.05), "float32"),
    }
    for dtype in ("bfloat16", "float16"):
        short = "bf16" if dtype == "bfloat16" else "f16"
        t = torch.from_numpy(_randn(f"{short}37x32", (37, 32), 0.2)).to(TORCH_DTYPES[dtype])
        inputs[f"{short}_37x32"] = (t.float().numpy(), dtype)
    big = torch.from_numpy(_randn("bf16_3x4100", (3, 4100), 0.02)).to(torch.bfloat16)
    inputs["bf16_3x4100"] = (big.float().numpy(), "bfloat16")
    many = torch.from_numpy(_randn("f16_40x260", (40, 260), 0.05)).to(torch.float16)
    inputs["f16_40x260"] = (many.float().numpy(), "float16")
    return inputs


def four_bit_cases() -> list[tuple[str, str, int, bool]]:
    """(input, quant_type, blocksize, double_quant)."""
    cases = []
    both = ("nf4", "fp4")
    for name in ("w37x32", "w32x37", "bf16_37x32", "f16_37x32", "tail_ties", "tail_zero", "recip"):
        cases += [(name, qt, 64, dq) for qt in both for dq in (False, True)]
    cases += [("w5x7", qt, bs, False) for qt in both for bs in (32, 64)] + [("w5x7", "nf4", 64, True)]
    cases += [("edge", qt, bs, dq) for qt in both for bs in (32, 64) for dq in (False, True)]
    cases += [("w37x32", "nf4", 32, True), ("w37x32", "fp4", 128, False)]
    for i, bs in enumerate((32, 64, 128, 256, 512, 1024, 2048, 4096)):
        cases += [("w8x300", "nf4", bs, i % 2 == 0), ("w8x300", "fp4", bs, i % 2 == 1)]
    cases += [("bf16_3x4100", "nf4", 4096, True), ("bf16_3x4100", "fp4", 2048, False), ("bf16_3x4100", "nf4", 64, True)]
    cases += [("w40x260", "nf4", 32, True), ("w40x260", "fp4", 32, True), ("f16_40x260", "nf4", 32, True)]
    return cases


_flat_dequant = default_ops._dequantize_4bit_compute.__wrapped__  # the default kernel without torch.compile


def flat_dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype):
    """bnb's default-backend dequantize_4bit (scale blocks over the flattened weight)."""
    if A.dtype != torch.uint8:
        A = A.view(torch.uint8)
    return _flat_dequant(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize, shape, dtype)


def rebuilt_absmax(state) -> torch.Tensor:
    if not state.nested:
        return state.absmax
    return F.dequantize_blockwise(state.absmax, state.state2) + state.offset


def write_quantize_4bit() -> None:
    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {}
    inputs = four_bit_inputs()
    for name, (values, dtype) in inputs.items():
        tensors[f"input.{name}"] = values
        meta[f"input.{name}"] = meta_json({"dtype": dtype, "shape": list(values.shape)})
    mismatched = 0
    for k, (name, qt, bs, dq) in enumerate(four_bit_cases()):
        case = f"case{k:02d}"
        values, dtype = inputs[name]
        w = torch.from_numpy(values.copy()).to(TORCH_DTYPES[dtype])
        packed, state = F.quantize_4bit(w, blocksize=bs, compress_statistics=dq, quant_type=qt)
        assert packed.dtype == torch.uint8 and packed.shape[1] == 1
        tensors[f"{case}.packed"] = packed.reshape(-1).numpy()
        tensors[f"{case}.absmax"] = state.absmax.numpy()
        scales = rebuilt_absmax(state)
        if dq:
            tensors[f"{case}.nested_absmax"] = state.state2.absmax.numpy()
            tensors[f"{case}.offset"] = state.offset.reshape(1).numpy()
            tensors[f"{case}.scales"] = scales.numpy()
            assert torch.equal(state.state2.code, F.create_dynamic_map())
        reference = flat_dequantize_4bit(packed, scales, bs, qt, state.shape, state.dtype)
        cpu = F.dequantize_4bit(packed, state)
        diff = float((cpu.float() - reference.float()).abs().max())
        mismatched += diff != 0
        if values.size <= 16384:
            tensors[f"{case}.dequant"] = reference.float().numpy()
        qs_json = bytes(state.as_dict(packed=True)[f"quant_state.bitsandbytes__{qt}"].numpy()).decode("utf-8")
        meta[case] = meta_json(
            {
                "input": name,
                "dtype": dtype,
                "shape": list(values.shape),
                "quant_type": qt,
                "blocksize": bs,
                "double_quant": dq,
                "quant_state_json": qs_json,
                "cpu_dequant_kernel_max_abs_diff": diff,
            }
        )
    tensors["nf4_code"] = F.get_4bit_type("nf4", device="cpu").numpy()
    tensors["fp4_code"] = F.get_4bit_type("fp4", device="cpu").numpy()
    tensors["fp4_argsort"] = torch.argsort(F.get_4bit_type("fp4", device="cpu")).numpy().astype(np.int64)
    tensors["dynamic_map"] = F.create_dynamic_map().numpy()
    meta["format"] = (
        "input.<name>: float32 values of the weight (exact in metadata dtype); <case>.packed: quantize_4bit's packed "
        "bytes flattened; <case>.absmax: float32 scales or, with double quant, uint8 codes; <case>.nested_absmax, "
        "<case>.offset (float32 [1]), <case>.scales (float32 scales rebuilt by bnb: dequantize_blockwise + offset); "
        "<case>.dequant: dequantize_4bit with flat blocks (bnb's default kernel) in the weight's dtype, widened; "
        "cpu_dequant_kernel_max_abs_diff: bnb's CPU dequantize_4bit kernel against it (nonzero where its AVX512 path "
        "indexes scales per row)"
    )
    meta["cases_where_cpu_dequant_kernel_differs"] = str(mismatched)
    write_safetensors(OUT / "quantize_4bit.safetensors", tensors, meta)


# ---------------------------------------------------------------------------------------------------------------
# (a) 8-bit


def _int8_stress() -> np.ndarray:
    """[64, 8] float16 rows, among them every row of a larger random draw where round(x * (1/m) * 127) and
    round(x * 127 / m) give different codes: bnb computes the former."""
    g = generator(stable_seed("bnb", "int8_stress"))
    b = (torch.randn(20000, 8, generator=g) * torch.rand(20000, 1, generator=g) * 3).to(torch.float16)
    a = b.float().numpy()
    m = np.abs(a).max(axis=1).astype(F32)
    recip = (F32(1) / m).astype(F32) * F32(127)
    direct = (F32(127) / m).astype(F32)
    c1 = np.round((a * recip[:, None]).astype(F32))
    c2 = np.round((a * direct[:, None]).astype(F32))
    differ = np.nonzero((c1 != c2).any(axis=1))[0]
    rows = list(differ[:32]) + [i for i in range(64) if i not in set(differ[:32])]
    return a[np.array(rows[:64])]


def write_int8() -> None:
    cases = {
        "w37x32": (_randn("i8_37x32", (37, 32), 0.2), "float32"),
        "bf16_7x13": (torch.from_numpy(_randn("i8_7x13", (7, 13), 1.0)).to(torch.bfloat16).float().numpy(), "bfloat16"),
        "f16_stress": (_int8_stress(), "float16"),
    }
    cases["bf16_7x13"][0][3] = 0.0  # a zero row: codes 0, SCB 0
    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {}
    for name, (values, dtype) in cases.items():
        param = bnb.nn.Int8Params(torch.from_numpy(values.copy()).to(TORCH_DTYPES[dtype]), requires_grad=False)
        param = param._quantize("cpu")  # what Params.to("cpu") does for an unquantized weight
        tensors[f"input.{name}"] = values
        tensors[f"{name}.CB"] = param.CB.numpy()
        tensors[f"{name}.SCB"] = param.SCB.numpy()
        tensors[f"{name}.dequant"] = F.int8_vectorwise_dequant(param.CB, param.SCB).numpy()
        meta[name] = meta_json({"dtype": dtype, "shape": list(values.shape)})
    meta["format"] = (
        "input.<case>: float32 values of the weight (exact in metadata dtype); <case>.CB / .SCB: Int8Params "
        "quantization on CPU (weight -> float16 -> int8_vectorwise_quant); <case>.dequant: int8_vectorwise_dequant"
    )
    write_safetensors(OUT / "int8.safetensors", tensors, meta)


SYNTHETIC_KEY = "language_model.model.layers.0.self_attn.q_proj.weight"
SYNTHETIC_SHAPE = [4096, 4096]


def sha256(a) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write_synthetic_7b() -> None:
    w32 = torch.from_numpy(synthetic_weight(SYNTHETIC_KEY, SYNTHETIC_SHAPE))
    cases = []
    for dtype, qt, bs, dq in (("float32", "nf4", 64, True), ("bfloat16", "fp4", 64, False), ("bfloat16", "int8", 0, False)):
        w = w32.to(TORCH_DTYPES[dtype])
        if qt == "int8":
            param = bnb.nn.Int8Params(w.clone(), requires_grad=False)._quantize("cpu")
            cases.append({"dtype": dtype, "int8": True, "CB": sha256(param.CB.numpy()), "SCB": sha256(param.SCB.numpy())})
            continue
        packed, state = F.quantize_4bit(w, blocksize=bs, compress_statistics=dq, quant_type=qt)
        entry = {"dtype": dtype, "quant_type": qt, "blocksize": bs, "double_quant": dq,
                 "packed": sha256(packed.numpy()), "absmax": sha256(state.absmax.numpy())}
        if dq:
            entry |= {"nested_absmax": sha256(state.state2.absmax.numpy()), "offset": float(state.offset)}
        cases.append(entry)
    doc = {
        "note": "sha256 of the little-endian bytes of bitsandbytes 0.50.2 CPU outputs for the synthetic weight "
        "(reference/synthetic.py) of `key` and `shape`, as float32 or rounded to bfloat16 (nearest even); packed = "
        "quantize_4bit bytes, absmax = float32 scales or uint8 codes, offset = float32 nested_offset",
        "key": SYNTHETIC_KEY,
        "shape": SYNTHETIC_SHAPE,
        "cases": cases,
    }
    (OUT / "synthetic_7b.json").write_text(json.dumps(doc, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# torch.sum / mean (double quantization's offset)

SUM_SIZES = [1, 3, 15, 16, 17, 63, 64, 65, 100, 255, 256, 1000, 1024, 4095, 4097, 16384, 65536, 65537, 262144,
             704512, 1000003, 4194305]


def sums_here() -> dict[str, list[float]]:
    torch.set_num_threads(1)
    sums, means = [], []
    for n in SUM_SIZES:
        x = torch.from_numpy(np.abs(synthetic_weight(f"bnb.sum.{n}.bias", [n])))
        sums.append(float(x.sum()))
        means.append(float(x.mean()))
    return {"sums": sums, "means": means, "capability": torch.backends.cpu.get_cpu_capability()}


def write_torch_sum() -> None:
    here = sums_here()
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run(
        [sys.executable, __file__, "--sums"], env=env, check=True, capture_output=True, text=True
    ).stdout
    avx2 = json.loads(out.strip().splitlines()[-1])
    assert here["capability"] == "AVX512", here["capability"]
    assert avx2["capability"] == "AVX2", avx2["capability"]
    tensors = {
        "sum.avx512": np.array(here["sums"], F32),
        "mean.avx512": np.array(here["means"], F32),
        "sum.avx2": np.array(avx2["sums"], F32),
        "mean.avx2": np.array(avx2["means"], F32),
        "sizes": np.array(SUM_SIZES, np.int64),
    }
    meta = {
        "format": "inputs: x = |synthetic_weight('bnb.sum.<n>.bias', [n])| (reference/synthetic.py) for n in sizes; "
        "sum.<cap> / mean.<cap>: torch.sum(x) / torch.mean(x), one thread, torch dispatching to AVX512 (this machine) "
        "or AVX2 (ATEN_CPU_CAPABILITY=avx2)",
    }
    write_safetensors(OUT / "torch_sum.safetensors", tensors, meta)


# ---------------------------------------------------------------------------------------------------------------
# (b) quantized models, module rule


def load_quantized(folder: Path, **config) -> VideoLlavaForConditionalGeneration:
    kwargs = dict(dtype=torch.float32, attn_implementation="eager", device_map="cpu")
    if config:
        kwargs["quantization_config"] = BitsAndBytesConfig(**config)
    model = VideoLlavaForConditionalGeneration.from_pretrained(folder, **kwargs)
    return model.eval()


def _normalise_modes(folder: Path) -> None:
    for f in folder.iterdir():
        f.chmod(0o644)


def write_models() -> None:
    for folder, config in ((NF4_DIR, NF4_CONFIG), (INT8_DIR, INT8_CONFIG)):
        model = load_quantized(TESTER, **config)
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder)
        _normalise_modes(folder)
        # Read back: the pre-quantized loading path must give the same quantized tensors.
        again = load_quantized(folder)
        a, b = model.state_dict(), again.state_dict()
        assert set(a) == set(b), set(a) ^ set(b)
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k], b[k]), k


def linear_paths(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]


SKIP_CASES = [
    None,
    ["lm_head"],
    [],
    ["q_proj"],
    ["mlp.fc1", "multi_modal_projector"],
    ["model.language_model.layers.1"],
    ["layers.1"],
    [r"model\.image_tower\..*", "up_proj"],
    [r".*\.v_proj", "lm_head"],
    ["mlp.gate"],
]


def write_modules() -> None:
    plain = VideoLlavaForConditionalGeneration.from_pretrained(TESTER, dtype=torch.float32)
    paths = linear_paths(plain)
    keep_fp32 = sorted(plain._keep_in_fp32_modules) if plain._keep_in_fp32_modules is not None else None
    cases = []
    for skip in SKIP_CASES:
        config = dict(NF4_CONFIG, llm_int8_skip_modules=skip)
        model = load_quantized(TESTER, **config)
        quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert set(quantized) <= set(paths)
        cases.append(
            {
                "llm_int8_skip_modules": skip,
                "modules_to_not_convert": sorted(model.hf_quantizer.modules_to_not_convert),
                "quantized": quantized,
            }
        )
    doc = {
        "note": "module paths of every nn.Linear of the tester VideoLlavaForConditionalGeneration (transformers 5.24 "
        "layout) and, for each llm_int8_skip_modules, the modules_to_not_convert transformers derived and the "
        "Linear modules it replaced by bnb.nn.Linear4bit",
        "linear_paths": paths,
        "keep_in_fp32_modules": keep_fp32,
        "cases": cases,
    }
    (OUT / "modules.json").write_text(json.dumps(doc, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# (c) logits, (d) QLoRA


@contextlib.contextmanager
def flat_cpu_dequantize():
    """bnb with its CPU dequantize_4bit kernel replaced by its default kernel (the stock kernel comes back after)."""
    lib = torch.library.Library("bitsandbytes", "IMPL")
    lib.impl("dequantize_4bit", flat_dequantize_4bit, "CPU")
    try:
        yield
    finally:
        lib._destroy()


def no_bf16_repack(model) -> None:
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def dequantized_copy(model):
    """The same model with every bnb Linear replaced by a float32 nn.Linear holding its dequantized weight."""
    import copy

    plain = copy.deepcopy(model)
    for name, m in list(plain.named_modules()):
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            w = flat_dequantize_4bit(m.weight.data, rebuilt_absmax(qs), qs.blocksize, qs.quant_type, qs.shape, qs.dtype)
        elif isinstance(m, bnb.nn.Linear8bitLt):
            cb = m.state.CB if m.state.CB is not None else m.weight.CB
            scb = m.state.SCB if m.state.SCB is not None else m.weight.SCB
            w = F.int8_vectorwise_dequant(cb, scb)
        else:
            continue
        lin = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(w.float())
            if m.bias is not None:
                lin.bias.copy_(m.bias.float())
        plain.set_submodule(name, lin)
    return plain.eval()


def read_case(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def case_inputs(c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    kwargs = dict(input_ids=c["input_ids"], attention_mask=c["attention_mask"])
    if "pixel_values_images" in c:
        kwargs["pixel_values"] = c["pixel_values_images"]
    if "pixel_values_videos" in c:
        kwargs["pixel_values_videos"] = c["pixel_values_videos"]
    return kwargs


def write_logits() -> None:
    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {}
    for case in LOGIT_CASES:
        c = read_case(TESTER_CASES / f"{case}.safetensors")
        kwargs = case_inputs(c)
        fp32 = c["logits"]
        # 4-bit. Stock: bnb's eval path on this CPU.
        stock = load_quantized(NF4_DIR)
        try:
            with torch.no_grad():
                stock(**kwargs)
            stock_error = "ran"
        except Exception as e:  # noqa: BLE001
            stock_error = f"{type(e).__name__}: {e}"
        no_bf16 = load_quantized(NF4_DIR)
        no_bf16_repack(no_bf16)
        with torch.no_grad():
            stock_kernel = no_bf16(**kwargs).logits
        with flat_cpu_dequantize():
            with torch.no_grad():
                ref = no_bf16(**kwargs).logits
        with torch.no_grad():
            plain = dequantized_copy(no_bf16)(**kwargs).logits
        assert torch.equal(ref, plain), float((ref - plain).abs().max())
        tensors[f"{case}.nf4.logits"] = ref.numpy()
        meta[f"{case}.nf4"] = meta_json(
            {
                "path": "bnb Linear4bit, support_avx512bf16_for_cpu=False, CPU dequantize_4bit = bnb default kernel: "
                "matmul_4bit -> gemm_4bit -> dequantize_blockwise + offset, dequantize_4bit, F.linear (float32); "
                "equal to a plain float32 model of the dequantized weights",
                "stock_eval_forward": stock_error,
                "stock_cpu_kernel_max_abs_diff": float((stock_kernel - ref).abs().max()),
                "drift_vs_float32_max_abs": float((ref - fp32).abs().max()),
                "drift_vs_float32_kl": kl(fp32, ref, c["attention_mask"]),
            }
        )
        # 8-bit: LLM.int8 as bnb runs it on CPU, and dequantize-then-float32.
        int8 = load_quantized(INT8_DIR)
        with torch.no_grad(), warnings_silenced():
            llm_int8 = int8(**kwargs).logits
            deq = dequantized_copy(int8)(**kwargs).logits
        tensors[f"{case}.int8.logits_llm_int8"] = llm_int8.numpy()
        tensors[f"{case}.int8.logits_dequant"] = deq.numpy()
        meta[f"{case}.int8"] = meta_json(
            {
                "logits_llm_int8": "bnb Linear8bitLt forward on CPU as is (threshold 6.0): activations to float16, "
                "int8 row-wise with outlier columns kept in float32, int8 matmul, scales",
                "logits_dequant": "every Linear8bitLt replaced by float32 nn.Linear(int8_vectorwise_dequant(CB, SCB))",
                "llm_int8_vs_dequant_max_abs": float((llm_int8 - deq).abs().max()),
                "drift_vs_float32_max_abs": {"llm_int8": float((llm_int8 - fp32).abs().max()), "dequant": float((deq - fp32).abs().max())},
                "drift_vs_float32_kl": {"llm_int8": kl(fp32, llm_int8, c["attention_mask"]), "dequant": kl(fp32, deq, c["attention_mask"])},
            }
        )
    meta["format"] = (
        "<case>.nf4.logits: tester-nf4-dq/ on test/fixtures/cases/tester/<case> inputs (plain forward, position_ids "
        "None); <case>.int8.logits_llm_int8 / logits_dequant: tester-int8/ (see metadata). drift: against the float32 "
        "tester logits of the case file; kl = mean over attended positions of KL(softmax fp32 || softmax quantized)"
    )
    write_safetensors(OUT / "logits.safetensors", tensors, meta)


@contextlib.contextmanager
def warnings_silenced():
    import logging

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor) -> float:
    p = torch.log_softmax(p_logits.double(), -1)
    q = torch.log_softmax(q_logits.double(), -1)
    per = (p.exp() * (p - q)).sum(-1)
    return float(per[mask.bool()].mean())


def write_qlora() -> None:
    batch = read_case(TRAINING_BATCH)
    a = {k[2:]: v for k, v in batch.items() if k.startswith("A.") and k[2:] in (
        "input_ids", "attention_mask", "labels", "pixel_values_images", "pixel_values_videos")}
    kwargs = case_inputs(a) | {"labels": a["labels"]}

    def peft_on(base):
        model = get_peft_model(base, LoraConfig(init_lora_weights=False, **LORA))
        g = generator(stable_seed("training", "lora"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(LORA_INIT_STD * torch.randn(p.shape, generator=g))
        return model.eval()

    def grads(model) -> dict[str, np.ndarray]:
        out = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                key = name.removeprefix("base_model.model.").replace(".default.", ".")
                assert p.grad is not None, name
                out[f"grad.{key}"] = p.grad.numpy()
        return out

    base = load_quantized(NF4_DIR)
    no_bf16_repack(base)
    with flat_cpu_dequantize():
        model = peft_on(base)
        layer_types = sorted({type(m).__module__ + "." + type(m).__name__ for n, m in model.named_modules() if "q_proj" in n and "lora" not in n})
        out = model(**kwargs)
        out.loss.backward()
        g = grads(model)
    # The same LoRA on a float32 model of the dequantized weights.
    plain = peft_on(dequantized_copy(load_quantized(NF4_DIR)))
    out2 = plain(**kwargs)
    out2.loss.backward()
    g2 = grads(plain)
    assert set(g) == set(g2) and len(g) == 8, (sorted(g), sorted(g2))
    diff = max(float(np.abs(g[k] - g2[k]).max()) for k in g)
    tensors = dict(g)
    tensors["loss"] = out.loss.detach().reshape(1).numpy()
    tensors["logits"] = out.logits.detach().numpy()
    meta = {
        "case": "(d) QLoRA: PEFT LoRA " + dumps(LORA) + f", lora_A and lora_B = {LORA_INIT_STD} N(0,1) drawn as in "
        "gen_training.py (seed stable_seed('training', 'lora')), on tester-nf4-dq/ (frozen), eval mode; "
        "model(**A, labels).loss.backward() with A = batch A of test/fixtures/training/batch.safetensors; grad names "
        "drop 'base_model.model.' and the adapter name 'default'",
        "path": "peft bnb LoRA layers " + dumps(layer_types) + " over bnb Linear4bit with support_avx512bf16_for_cpu=False "
        "and the CPU dequantize_4bit kernel replaced by bnb's default kernel (MatMul4Bit backward: grad_output @ "
        "dequantized weight)",
        "vs_dequantized_float32_lora_max_abs_grad_diff": repr(diff),
        "loss_dequantized_float32_lora": repr(float(out2.loss)),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bnb.__version__,
    }
    write_safetensors(OUT / "qlora.safetensors", tensors, meta)


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    set_deterministic()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    OUT.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stderr(io.StringIO()):
        write_quantize_4bit()
    write_int8()
    write_synthetic_7b()
    write_torch_sum()
    write_models()
    write_modules()
    write_logits()
    write_qlora()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"test/fixtures/bnb: {total} bytes")


if __name__ == "__main__":
    if "--sums" in sys.argv:
        print(json.dumps(sums_here()))
    else:
        main()
