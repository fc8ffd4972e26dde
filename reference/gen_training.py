"""Reference fixtures for fine-tuning (issue 6): causal-LM loss, gradients, AdamW, PEFT LoRA adapters.

Model: the `tester` checkpoint of gen_models.py (test/fixtures/models/tester), float32, eager attention, eval mode
(every dropout probability of the tester is 0 anyway). Batches hold images, videos, left padding and labels.

Writes, deterministically, under test/fixtures/training/:
  batch.safetensors            two batches (A: an image row + a video row, left padded; B: a text row + an image
                               row) with labels; A's logits and loss (mean, and with num_items_in_batch); parameter
                               counts in the metadata
  grads_projector.safetensors  (a) LLaVA stage 1: only the projector trainable, loss.backward() on batch A
  grads_lora.safetensors       (b) PEFT LoRA r=4, alpha=8 on the decoder's q_proj/v_proj, A and B random: grads of
                               every lora_A/lora_B, the adapter's logits and the merged model's logits
  grads_full.safetensors       (c) every parameter trainable: all gradients (parameters that get none are listed)
  adamw.safetensors            3 steps of torch.optim.AdamW on the projector, each step accumulating batch A and B
                               (loss / 2 each), then clip_grad_norm_; raw accumulated grads, total norms and the
                               weights after every step
  peft_adapter/                the LoRA adapter of (b), saved by peft 0.21.2 (adapter_config.json,
                               adapter_model.safetensors)
  tester_bf16/                 the tester's weights rounded to bfloat16 and saved by save_pretrained (a 16-bit base)
  grads_lora_bf16.safetensors  (d) the adapter of (b) on that bfloat16 base, loaded in float32 (widening is exact, so
                               these are the gradients of a float32-compute run on the 16-bit weights): every
                               lora_A/lora_B gradient and the loss on A

Then it checks, read only, what the TypeScript tests wrote when run with REGENERATE_TS_OUTPUTS=1 (if present):
  ts_saved_adapter/  loaded by PeftModel.from_pretrained onto the tester: logits must equal the adapter's logits
  ts_saved_model/    the tester with the adapter merged, saved by savePretrained (sharded): from_pretrained must load
                     every weight and give the merged model's logits
and fails loudly when they do not match.

Run: /work/.venv-ref/bin/python reference/gen_training.py      (or `npm run reference`)
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import warnings
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import VideoLlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, dumps, generator, save_case, set_deterministic, stable_seed  # noqa: E402

MODEL_DIR = FIXTURES / "models" / "tester"
# The adapter config records the base model's path: a repo-relative one keeps the bytes machine independent.
MODEL_DIR_NAME = "test/fixtures/models/tester"
OUT = FIXTURES / "training"
ADAPTER_DIR = OUT / "peft_adapter"
TS_ADAPTER_DIR = OUT / "ts_saved_adapter"
TS_MODEL_DIR = OUT / "ts_saved_model"

IDS = dict(image=0, video=1, pad=3, bos=4, eos=5)  # the tester's special ids (gen_models.TESTER_IDS)
IGNORE = -100
IMAGE_TOKENS = 9  # (12 / 4)^2 patches, CLS dropped (strategy "default")
FRAME_TOKENS = 10  # patches + CLS: videos keep CLS
FRAMES = 2

LORA = dict(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", lora_dropout=0.0)
LORA_INIT_STD = 0.2  # A and B both random (PEFT's default B = 0 would make every grad of A zero)

ADAMW = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
ADAMW_STEPS = 3
MAX_GRAD_NORM = 0.5  # below the accumulated norms of the first steps, so clipping is exercised


def load() -> VideoLlavaForConditionalGeneration:
    model, info = VideoLlavaForConditionalGeneration.from_pretrained(
        MODEL_DIR, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    check_loading_info(MODEL_DIR, info)
    return model.eval()


def check_loading_info(where: Path, info: dict) -> None:
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise RuntimeError(f"{where}: loading reported {bad}")


# ---------------------------------------------------------------------------------------------------------------
# Batches


def _text(g: torch.Generator, n: int) -> list[int]:
    pool = [i for i in range(99) if i not in IDS.values()]
    return [pool[int(i)] for i in torch.randint(0, len(pool), (n,), generator=g)]


def make_batch(name: str) -> dict[str, torch.Tensor]:
    """Rows left padded; labels = input_ids with -100 on pads, placeholders and the first 3 tokens (the prompt)."""
    g = generator(stable_seed("training", name))
    image = [IDS["image"]] * IMAGE_TOKENS
    video = [IDS["video"]] * (FRAME_TOKENS * FRAMES)
    bos = [IDS["bos"]]
    if name == "A":
        rows = [bos + _text(g, 3) + image + _text(g, 6), bos + _text(g, 2) + video + _text(g, 5)]
        n_images, n_videos = 1, 1
    elif name == "B":
        rows = [bos + _text(g, 9), bos + _text(g, 4) + image + _text(g, 7)]
        n_images, n_videos = 1, 0
    else:
        raise ValueError(name)
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), IDS["pad"], dtype=torch.int64)
    mask = torch.zeros((len(rows), length), dtype=torch.int64)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.int64)
    for b, r in enumerate(rows):
        start = length - len(r)
        input_ids[b, start:] = torch.tensor(r)
        mask[b, start:] = 1
        for j, tok in enumerate(r):
            if j >= 3 and tok not in (IDS["image"], IDS["video"]):
                labels[b, start + j] = tok
    out = dict(input_ids=input_ids, attention_mask=mask, labels=labels)
    if n_images:
        out["pixel_values_images"] = torch.randn((n_images, 3, 12, 12), generator=g)
    if n_videos:
        out["pixel_values_videos"] = torch.randn((n_videos, FRAMES, 3, 12, 12), generator=g)
    return out


def model_inputs(batch: dict[str, torch.Tensor], with_labels: bool = True) -> dict[str, torch.Tensor]:
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if "pixel_values_images" in batch:
        kwargs["pixel_values"] = batch["pixel_values_images"]  # the 5.24 name of pixel_values_images
    if "pixel_values_videos" in batch:
        kwargs["pixel_values_videos"] = batch["pixel_values_videos"]
    if with_labels:
        kwargs["labels"] = batch["labels"]
    return kwargs


def counted_tokens(labels: torch.Tensor) -> int:
    return int((labels[:, 1:] != IGNORE).sum())


# ---------------------------------------------------------------------------------------------------------------
# Loss and gradients


def write_batch(a: dict, b: dict) -> None:
    model = load()
    with torch.no_grad():
        out = model(**model_inputs(a))
        n = counted_tokens(a["labels"]) + 3  # a num_items_in_batch that differs from the batch's own count
        loss_items = model(**model_inputs(a), num_items_in_batch=torch.tensor(n)).loss
    tensors = {f"A.{k}": v for k, v in a.items()} | {f"B.{k}": v for k, v in b.items()}
    tensors |= {"A.logits": out.logits, "A.loss": out.loss.reshape(1), "A.loss_num_items": loss_items.reshape(1)}

    projector_only = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    peft_model = get_peft_model(load(), LoraConfig(init_lora_weights=False, **LORA))
    lora_trainable, lora_all = peft_model.get_nb_trainable_parameters()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        peft_model.print_trainable_parameters()
    meta = {
        "model": MODEL_DIR_NAME,
        "labels": "input_ids with -100 on pads, on image/video placeholders and on each row's first 3 tokens",
        "A.counted_tokens": str(counted_tokens(a["labels"])),
        "A.num_items_in_batch": str(n),
        "loss": "A.loss = model(**A, labels).loss (mean over counted tokens); A.loss_num_items = the same with "
        "num_items_in_batch (sum / num_items_in_batch)",
        "parameters.total": str(model.num_parameters()),
        "parameters.projector": str(projector_only),
        "parameters.lora_trainable": str(lora_trainable),
        "parameters.lora_all": str(lora_all),
        "parameters.lora_summary": printed.getvalue().strip(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    save_case(OUT / "batch.safetensors", tensors, meta)


def grads_of(model: torch.nn.Module, prefix_to_strip: str = "") -> tuple[dict[str, torch.Tensor], list[str]]:
    grads, none = {}, []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = name[len(prefix_to_strip) :] if name.startswith(prefix_to_strip) else name
        key = key.replace(".default.", ".")  # PEFT's adapter name
        if p.grad is None:
            none.append(key)
        else:
            grads[f"grad.{key}"] = p.grad
    return grads, none


def write_grads_projector(a: dict) -> None:
    model = load()
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    loss = model(**model_inputs(a)).loss
    loss.backward()
    grads, none = grads_of(model)
    assert not none and len(grads) == 4, (list(grads), none)
    save_case(
        OUT / "grads_projector.safetensors",
        grads | {"loss": loss.detach().reshape(1)},
        {"case": "(a) projector only: model.requires_grad_(False); multi_modal_projector.requires_grad_(True); "
         "model(**A, labels).loss.backward()"},
    )


def make_peft_model() -> PeftModel:
    model = get_peft_model(load(), LoraConfig(init_lora_weights=False, **LORA))
    g = generator(stable_seed("training", "lora"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(LORA_INIT_STD * torch.randn(p.shape, generator=g))
    model.peft_config["default"].base_model_name_or_path = MODEL_DIR_NAME
    return model.eval()


def write_grads_lora(a: dict) -> None:
    model = make_peft_model()
    out = model(**model_inputs(a))
    out.loss.backward()
    grads, none = grads_of(model, "base_model.model.")
    assert not none and len(grads) == 8, (list(grads), none)

    shutil.rmtree(ADAPTER_DIR, ignore_errors=True)
    model.save_pretrained(ADAPTER_DIR)
    (ADAPTER_DIR / "README.md").unlink()  # a model card template, not part of the adapter
    for f in ADAPTER_DIR.iterdir():
        f.chmod(0o644)

    merged = model.merge_and_unload().eval()
    with torch.no_grad():
        merged_logits = merged(**model_inputs(a, with_labels=False)).logits
    diff = float((merged_logits - out.logits.detach()).abs().max())
    if diff > 1e-5:
        raise RuntimeError(f"merged vs adapter logits differ by {diff}")
    save_case(
        OUT / "grads_lora.safetensors",
        grads | {"loss": out.loss.detach().reshape(1), "logits": out.logits, "merged_logits": merged_logits},
        {
            "case": "(b) PEFT LoRA " + dumps(LORA) + f", lora_A and lora_B = {LORA_INIT_STD} N(0,1) (saved in "
            "peft_adapter/); model(**A, labels).loss.backward(); grad names drop 'base_model.model.' and the adapter "
            "name 'default'",
            "logits": "the adapter model's logits on A; merged_logits: after merge_and_unload (max diff to logits "
            f"{diff:.3g})",
        },
    )


TESTER_BF16_DIR = OUT / "tester_bf16"


def write_grads_lora_bf16(a: dict) -> None:
    base = load().to(torch.bfloat16)
    shutil.rmtree(TESTER_BF16_DIR, ignore_errors=True)
    base.save_pretrained(TESTER_BF16_DIR)
    for f in TESTER_BF16_DIR.iterdir():
        f.chmod(0o644)
    widened, info = VideoLlavaForConditionalGeneration.from_pretrained(
        TESTER_BF16_DIR, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    check_loading_info(TESTER_BF16_DIR, info)
    model = PeftModel.from_pretrained(widened.eval(), ADAPTER_DIR, is_trainable=True).eval()
    out = model(**model_inputs(a))
    out.loss.backward()
    grads, none = grads_of(model, "base_model.model.")
    assert not none and len(grads) == 8, (list(grads), none)
    save_case(
        OUT / "grads_lora_bf16.safetensors",
        grads | {"loss": out.loss.detach().reshape(1)},
        {
            "case": "(d) the PEFT adapter of (b) on tester_bf16/ (the tester rounded to bfloat16) loaded in float32; "
            "model(**A, labels).loss.backward()",
        },
    )


def write_grads_full(a: dict) -> None:
    model = load()
    model.requires_grad_(True)
    loss = model(**model_inputs(a)).loss
    loss.backward()
    grads, none = grads_of(model)
    save_case(
        OUT / "grads_full.safetensors",
        grads | {"loss": loss.detach().reshape(1)},
        {
            "case": "(c) every parameter trainable; model(**A, labels).loss.backward()",
            "no_grad": dumps(none),
            "no_grad_note": "parameters the loss does not depend on get grad None in torch (the towers' "
            "post_layernorm is never applied)",
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# AdamW with accumulation and clipping


def write_adamw(a: dict, b: dict) -> None:
    model = load()
    model.requires_grad_(False)
    projector = model.model.multi_modal_projector
    projector.requires_grad_(True)
    named = [(f"model.multi_modal_projector.{n}", p) for n, p in projector.named_parameters()]
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, **ADAMW)
    micro = [a, b]
    tensors: dict[str, torch.Tensor] = {}
    norms = []
    for step in range(1, ADAMW_STEPS + 1):
        opt.zero_grad(set_to_none=True)
        for mb in micro:
            loss = model(**model_inputs(mb)).loss / len(micro)
            loss.backward()
        for name, p in named:
            tensors[f"step{step}.grad.{name}"] = p.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        norms.append(float(norm))
        tensors[f"step{step}.total_norm"] = norm.detach().reshape(1)
        opt.step()
        for name, p in named:
            tensors[f"step{step}.weight.{name}"] = p.detach().clone()
    if not norms[0] > MAX_GRAD_NORM:
        raise RuntimeError(f"the first step's norm {norms[0]} does not exceed max_norm: clipping untested")
    save_case(
        OUT / "adamw.safetensors",
        tensors,
        {
            "optimizer": "torch.optim.AdamW(projector parameters, " + dumps(ADAMW) + ") (single-tensor CPU path)",
            "loop": f"{ADAMW_STEPS} steps; each: zero_grad; for micro-batch in [A, B]: (loss / 2).backward(); "
            f"clip_grad_norm_(params, {MAX_GRAD_NORM}); step",
            "max_grad_norm": repr(MAX_GRAD_NORM),
            "stored": "step<k>.grad.<name> = accumulated grads before clipping; step<k>.total_norm = "
            "clip_grad_norm_'s return; step<k>.weight.<name> = the weights after step k",
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Checks of what the TypeScript side saved


def check_ts_adapter(a: dict) -> None:
    if not TS_ADAPTER_DIR.exists():
        print(f"(no {TS_ADAPTER_DIR.relative_to(FIXTURES.parent.parent)}: TS-saved adapter not checked)")
        return
    expected = load_expected("logits")
    model = PeftModel.from_pretrained(load(), TS_ADAPTER_DIR).eval()
    ours = make_peft_model()
    theirs = dict(model.named_parameters())
    for name, p in ours.named_parameters():
        if "lora_" in name and not torch.equal(theirs[name], p):
            raise RuntimeError(f"{TS_ADAPTER_DIR}: {name} differs from the reference adapter")
    with torch.no_grad():
        logits = model(**model_inputs(a, with_labels=False)).logits
    diff = float((logits - expected).abs().max())
    if diff != 0.0:
        raise RuntimeError(f"{TS_ADAPTER_DIR}: logits differ from the reference adapter's by {diff}")
    print(f"TS-saved adapter: loads in peft, every LoRA weight equal, logits identical (max diff {diff})")


def check_ts_model(a: dict) -> None:
    if not TS_MODEL_DIR.exists():
        print(f"(no {TS_MODEL_DIR.relative_to(FIXTURES.parent.parent)}: TS-saved model not checked)")
        return
    expected = load_expected("merged_logits")
    model, info = VideoLlavaForConditionalGeneration.from_pretrained(
        TS_MODEL_DIR, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    check_loading_info(TS_MODEL_DIR, info)
    reference = make_peft_model().merge_and_unload()
    want = reference.state_dict()
    worst = 0.0
    for name, p in model.state_dict().items():
        worst = max(worst, float((p - want[name]).abs().max()))
    if worst > 1e-6:
        raise RuntimeError(f"{TS_MODEL_DIR}: weights differ from peft's merge_and_unload by {worst}")
    ours = json.loads((TS_MODEL_DIR / "config.json").read_text())
    original = json.loads((MODEL_DIR / "config.json").read_text())
    if ours != original:
        raise RuntimeError(f"{TS_MODEL_DIR}/config.json differs from the tester's: {ours} vs {original}")
    with torch.no_grad():
        logits = model.eval()(**model_inputs(a, with_labels=False)).logits
    diff = float((logits - expected).abs().max())
    if diff > 1e-5:
        raise RuntimeError(f"{TS_MODEL_DIR}: logits differ from the merged reference by {diff} > 1e-5")
    print(f"TS-saved model: from_pretrained loads every weight (max weight diff {worst:.3g}), logits max diff {diff:.3g}")


def load_expected(name: str) -> torch.Tensor:
    with safe_open(str(OUT / "grads_lora.safetensors"), "pt") as f:
        return f.get_tensor(name)


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    set_deterministic()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # raised inside peft, not ours
    transformers.utils.logging.disable_progress_bar()
    OUT.mkdir(parents=True, exist_ok=True)
    a, b = make_batch("A"), make_batch("B")
    write_batch(a, b)
    write_grads_projector(a)
    write_grads_lora(a)
    write_grads_lora_bf16(a)
    write_grads_full(a)
    write_adamw(a, b)
    check_ts_adapter(a)
    check_ts_model(a)


if __name__ == "__main__":
    main()
