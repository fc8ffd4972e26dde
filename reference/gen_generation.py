"""Reference outputs of transformers' logits processors, for src/generation/sampling.ts.

Runs RepetitionPenaltyLogitsProcessor, MinNewTokensLengthLogitsProcessor, TemperatureLogitsWarper,
TopKLogitsWarper and TopPLogitsWarper (transformers 5.24), alone and chained in generate()'s order, on fixed
random float32 logits and token ids. Writes test/fixtures/generation/processors.safetensors:

  logits       F32 [4, 40]   scores fed to every case (standard normal x 2)
  logits_ties  F32 [4, 40]   the same with exact ties (columns 20..39 repeat 0..19), for top-k only
  input_ids    I64 [4, 10]   the ids the repetition penalty sees
  padding      I64 [4]       left padding per row (prompt_ignore_length, as generate() passes it)
  out.<case>   F32 [4, 40]   processed scores (-inf where filtered)

__metadata__["cases"] is JSON: case name -> {"input": tensor name, "steps": [[processor, params], ...]}.
"""

from __future__ import annotations

import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from common import FIXTURES, dumps, generator, set_deterministic, write_safetensors

OUT = FIXTURES / "generation" / "processors.safetensors"
PADDING = [0, 3, 0, 5]

CASES = {
    "temperature_0.7": ("logits", [("temperature", {"temperature": 0.7})]),
    "temperature_1.5": ("logits", [("temperature", {"temperature": 1.5})]),
    "top_k_1": ("logits", [("top_k", {"top_k": 1})]),
    "top_k_5": ("logits", [("top_k", {"top_k": 5})]),
    "top_k_100": ("logits", [("top_k", {"top_k": 100})]),
    "top_k_5_ties": ("logits_ties", [("top_k", {"top_k": 5})]),
    "top_p_0.05": ("logits", [("top_p", {"top_p": 0.05})]),
    "top_p_0.5": ("logits", [("top_p", {"top_p": 0.5})]),
    "top_p_0.9": ("logits", [("top_p", {"top_p": 0.9})]),
    "repetition_1.3": ("logits", [("repetition_penalty", {"penalty": 1.3})]),
    "repetition_0.7": ("logits", [("repetition_penalty", {"penalty": 0.7})]),
    "min_new_tokens": ("logits", [("min_new_tokens", {"prompt_length": 7, "min_new_tokens": 5, "eos": [3, 7]})]),
    "min_new_tokens_reached": ("logits", [("min_new_tokens", {"prompt_length": 7, "min_new_tokens": 3, "eos": [3, 7]})]),
    "chain": (
        "logits",
        [
            ("repetition_penalty", {"penalty": 1.2}),
            ("temperature", {"temperature": 0.8}),
            ("top_k", {"top_k": 10}),
            ("top_p", {"top_p": 0.8}),
        ],
    ),
}


def build(name: str, params: dict, padding: torch.Tensor):
    if name == "temperature":
        return TemperatureLogitsWarper(params["temperature"])
    if name == "top_k":
        return TopKLogitsWarper(top_k=params["top_k"])
    if name == "top_p":
        return TopPLogitsWarper(top_p=params["top_p"])
    if name == "repetition_penalty":
        return RepetitionPenaltyLogitsProcessor(params["penalty"], prompt_ignore_length=padding)
    if name == "min_new_tokens":
        return MinNewTokensLengthLogitsProcessor(params["prompt_length"], params["min_new_tokens"], params["eos"])
    raise ValueError(name)


def main() -> None:
    set_deterministic()
    g = generator(20240605)
    inputs = {"logits": (torch.randn(4, 40, generator=g) * 2).float()}
    ties = inputs["logits"].clone()
    ties[:, 20:] = ties[:, :20]
    inputs["logits_ties"] = ties
    input_ids = torch.randint(0, 40, (4, 10), generator=g)
    padding = torch.tensor(PADDING, dtype=torch.long)

    tensors = {**inputs, "input_ids": input_ids, "padding": padding}
    for case, (source, steps) in CASES.items():
        chain = LogitsProcessorList([build(n, p, padding) for n, p in steps])
        tensors[f"out.{case}"] = chain(input_ids, inputs[source].clone())
    meta_cases = {case: {"input": source, "steps": [[n, p] for n, p in steps]} for case, (source, steps) in CASES.items()}
    write_safetensors(
        OUT,
        {k: v.numpy() for k, v in tensors.items()},
        {
            "generator": "reference/gen_generation.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "cases": dumps(meta_cases),
        },
    )


if __name__ == "__main__":
    main()
