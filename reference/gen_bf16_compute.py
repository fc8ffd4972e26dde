"""PyTorch's own bfloat16 forward on the 16-bit fixture model, for the drift of `computeDtype: 'bfloat16'` (issue 14).

A Python user who loads Video-LLaVA with torch_dtype=torch.bfloat16 gets every operation in bfloat16 (products with
float32 accumulation inside oneDNN, but norms, softmax, residual sums and activations stored in bfloat16). This
package's bfloat16 compute rounds only the inputs of the products with large weights and keeps everything else in
float32, so it is not expected to equal this: the test reports both distances (to this and to the float32
reference of the same cases) beside each other. Not a parity fixture.

Writes test/fixtures/bf16_compute/faithful-bf16/<case>.safetensors: `logits` (bfloat16 logits widened to float32) for
every case of test/fixtures/cases/faithful-bf16. bfloat16 products on CPU may round differently on CPUs with other
kernels (AMX, AVX512-BF16, AVX2): regenerated here they are byte-identical; elsewhere they may move by bfloat16 ulps.

Run: reference/.venv/bin/python reference/gen_bf16_compute.py      (or `npm run reference`)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from transformers import VideoLlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, save_case, set_deterministic  # noqa: E402

MODEL = "faithful-bf16"
OUT = FIXTURES / "bf16_compute" / MODEL


def main() -> None:
    set_deterministic()
    transformers.logging.set_verbosity_error()
    model = VideoLlavaForConditionalGeneration.from_pretrained(FIXTURES / "models" / MODEL, dtype=torch.bfloat16, attn_implementation="eager").eval()
    OUT.mkdir(parents=True, exist_ok=True)
    for case in sorted((FIXTURES / "cases" / MODEL).glob("*.safetensors")):
        with safe_open(str(case), "pt") as f:
            names = set(f.keys())
            inputs = {"input_ids": f.get_tensor("input_ids"), "attention_mask": f.get_tensor("attention_mask")}
            for key in ("pixel_values_images", "pixel_values_videos"):
                if key in names:
                    inputs[key] = f.get_tensor(key).to(torch.bfloat16)
        with torch.inference_mode():
            logits = model(**inputs).logits.float()
        save_case(
            OUT / case.name,
            {"logits": logits},
            {"model": MODEL, "case": case.stem, "dtype": "torch_dtype=torch.bfloat16, eager attention, torch " + torch.__version__.split("+")[0]},
        )


if __name__ == "__main__":
    main()
