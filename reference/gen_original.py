"""Fixtures from the ORIGINAL Video-LLaVA code (PKU-YuanGroup/Video-LLaVA + its vendored LanguageBind towers).

The Hugging Face port drops LanguageBind's temporal attention; these fixtures pin what the original code computes,
on CPU in float32, for a synthetic model in the original checkpoint layout:

  test/fixtures/original/LanguageBind_Video_merge/   config.json + pytorch_model.bin (LanguageBindVideo, add_time_attn,
                                                      num_frames 8, hidden_act gelu; temporal weights non-trivial)
  test/fixtures/original/LanguageBind_Image/         config.json + pytorch_model.bin (LanguageBindImage)
  test/fixtures/original/Video-LLaVA/                 config.json (LlavaLlamaForCausalLM, 601-row vocabulary, no
                                                      <image>/<video> rows), two float16 .bin shards + index that also
                                                      hold copies of both towers (as the published checkpoint does),
                                                      tokenizer files (the demo tokenizer without placeholders)
  test/fixtures/cases/original/<case>.safetensors    inputs (input_ids with -200 placeholders), every tower hidden
                                                      state, projected features, inputs_embeds, decoder hidden states,
                                                      logits and greedy ids of the original model
  test/fixtures/cases/original/hf_port.safetensors   the same cases through transformers 5.24's VideoLlava on the
                                                      weights as convert_video_llava_weights_to_hf.py converts them
                                                      (temporal weights dropped), for the measured difference
  test/fixtures/cases/original/grads.safetensors     d loss / d every video-tower parameter (temporal ones included)
  test/fixtures/cases/original/preprocess.safetensors  the original LanguageBind video transform (and frame indices)

How the original code runs (phase "original", in reference/.venv-original, transformers 4.31 as the original pins):
the modules are imported from a checkout OUTSIDE this repository, named by the environment variable
VIDEO_LLAVA_ORIGINAL_SRC: a directory holding `Video-LLaVA/` (PKU-YuanGroup/Video-LLaVA) and `LanguageBind/`
(PKU-YuanGroup/LanguageBind) at the commits of reference/original.lock.json, whose file hashes are checked. The model
is assembled as the original builder.py does (LlavaLlamaForCausalLM.from_pretrained, then each tower's load_model()
resolving "LanguageBind/LanguageBind_*" through a Hugging Face cache under ./cache_dir, offline), kept in float32.
Only two imports are shimmed: `cv2` (the opencv decode backend, unused) and pytorchvideo's import of the removed
`torchvision.transforms.functional_tensor` (aliased to its new name; only augmentations use it).

Phase "hf" (this file run by reference/.venv, transformers 5.24) converts the same checkpoint with the rules of
convert_video_llava_weights_to_hf.py (strict=False: the temporal weights are silently dropped) and runs the cases.

Without VIDEO_LLAVA_ORIGINAL_SRC the script prints how to get the sources and leaves the fixtures as they are.
Run: VIDEO_LLAVA_ORIGINAL_SRC=/path/to/orig reference/.venv/bin/python reference/gen_original.py
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import FIXTURES, REPO_ROOT, dumps, generator, save_case, set_deterministic, stable_seed, top2_margin  # noqa: E402

SRC_ENV = "VIDEO_LLAVA_ORIGINAL_SRC"
LOCK = HERE / "original.lock.json"
ORIGINAL_VENV = HERE / ".venv-original"
MODELS = FIXTURES / "original"
CASES = FIXTURES / "cases" / "original"
VIDEO_TOWER_DIR = MODELS / "LanguageBind_Video_merge"
IMAGE_TOWER_DIR = MODELS / "LanguageBind_Image"
LLM_DIR = MODELS / "Video-LLaVA"

IMAGE_TOKEN_INDEX = -200  # videollava.constants
NUM_FRAMES = 8
VISION = dict(
    hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=28, patch_size=7,
    hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=16, lora_r=0,
)  # hidden_act "gelu": what LanguageBind's tower configs carry (open_clip ViT-L/14 uses exact GELU). lora_r 0: the
# published configs must have it (LanguageBindImage wraps its encoder in PEFT LoRA otherwise, and the -hf conversion,
# which fails on missing keys, could not have found plain encoder.layers.* keys)
TEXT_TOWER = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
    max_position_embeddings=16, projection_dim=16,
)
VOCAB = 601  # the demo tokenizer's base vocabulary: ids 601/602 are free for <image>/<video> placeholders
LLM = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, hidden_act="silu", rms_norm_eps=1e-5, max_position_embeddings=4096, bos_token_id=1,
    eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
)
MM = dict(
    mm_image_tower="LanguageBind/LanguageBind_Image", mm_video_tower="LanguageBind/LanguageBind_Video_merge",
    mm_projector_type="mlp2x_gelu", mm_hidden_size=32, mm_vision_select_layer=-2, mm_vision_select_feature="patch",
    mm_use_im_patch_token=False, mm_use_im_start_end=False, image_aspect_ratio="pad", tokenizer_padding_side="right",
    tokenizer_model_max_length=3072, use_mm_proj=True, tune_mm_mlp_adapter=False,
)
CASE_NAMES = ["video", "mixed", "two_videos"]
MAX_NEW_TOKENS = 8
MIN_MARGIN = 1e-3
FAKE_REVISION = "0" * 40


# -------------------------------------------------------------------------------------------------------------
# Sources


def source_files(root: Path) -> dict[str, Path]:
    """The original files the generator runs, by their path in the lock file."""
    lock = json.loads(LOCK.read_text())
    out = {}
    for repo in lock["repos"]:
        for rel in repo["files"]:
            out[f"{repo['dir']}/{rel}"] = root / repo["dir"] / rel
    return out


def check_sources(root: Path) -> None:
    lock = json.loads(LOCK.read_text())
    bad = []
    for repo in lock["repos"]:
        for rel, digest in repo["files"].items():
            f = root / repo["dir"] / rel
            if not f.is_file():
                bad.append(f"{f}: missing")
            elif hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                bad.append(f"{f}: differs from {repo['repo']}@{repo['commit']}")
    if bad:
        sys.exit("the original sources do not match reference/original.lock.json:\n  " + "\n  ".join(bad))


def no_sources_message() -> str:
    lock = json.loads(LOCK.read_text())
    lines = [f"gen_original.py: skipped ({SRC_ENV} is not set); the committed fixtures stay as they are.", "To regenerate:"]
    for repo in lock["repos"]:
        lines.append(f"  git clone https://github.com/{repo['repo']} $DIR/{repo['dir']} && git -C $DIR/{repo['dir']} checkout {repo['commit']}")
    lines.append(f"  {SRC_ENV}=$DIR npm run reference")
    return "\n".join(lines)


def ensure_original_venv() -> Path:
    python = ORIGINAL_VENV / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(ORIGINAL_VENV)], check=True)
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    main_site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                               capture_output=True, text=True).stdout.strip()
    Path(site, "reference_venv.pth").write_text(main_site + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", str(HERE / "requirements-original.txt")],
                   check=True)
    return python


# -------------------------------------------------------------------------------------------------------------
# Phase "original" (reference/.venv-original)


def import_original(root: Path):
    """Imports the original modules with the two shims described in the module docstring."""
    import importlib.machinery
    import types
    import warnings

    warnings.filterwarnings("ignore")
    cv2 = types.ModuleType("cv2")
    cv2.__spec__ = importlib.machinery.ModuleSpec("cv2", None)
    sys.modules["cv2"] = cv2
    import torchvision.transforms._functional_tensor as functional_tensor

    sys.modules["torchvision.transforms.functional_tensor"] = functional_tensor
    sys.path.insert(0, str(root / "Video-LLaVA"))
    import videollava.model.multimodal_encoder.languagebind as languagebind
    from videollava.model.language_model.llava_llama import LlavaConfig, LlavaLlamaForCausalLM

    return languagebind, LlavaConfig, LlavaLlamaForCausalLM


def half_exact_(model, seed: int, std: float) -> None:
    """Random weights that float16 represents exactly (the LLM checkpoint stores float16 copies of the towers, as
    the published one does, so both copies hold the same values): norm gains 1 + 0.1 N, biases 0.1 N, temporal
    embeddings N(0, 1), everything else std·N."""
    import torch

    g = generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1 and name.endswith(".weight") and "norm" in name:
                v = 1.0 + 0.1 * noise
            elif name.endswith(".bias"):
                v = 0.1 * noise
            elif name.endswith("temporal_embedding"):
                v = noise
            else:
                v = std * noise
            p.copy_(v.half().float())


def write_towers(languagebind) -> None:
    import torch

    for kind, out in (("video", VIDEO_TOWER_DIR), ("image", IMAGE_TOWER_DIR)):
        vision = dict(VISION)
        if kind == "video":
            vision.update(add_time_attn=True, num_frames=NUM_FRAMES)
        cls_cfg = languagebind.LanguageBindVideoConfig if kind == "video" else languagebind.LanguageBindImageConfig
        cls = languagebind.LanguageBindVideo if kind == "video" else languagebind.LanguageBindImage
        cfg = cls_cfg(text_config=dict(TEXT_TOWER), vision_config=vision, projection_dim=16)
        torch.manual_seed(stable_seed("original", kind, "construct"))
        model = cls(cfg).eval()
        half_exact_(model, stable_seed("original", kind, "weights"), 0.2)
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out, safe_serialization=False)
        for f in out.iterdir():
            f.chmod(0o644)


def fake_hub_cache(work: Path) -> None:
    """./cache_dir as huggingface_hub lays out a cache, so the towers' hub ids resolve offline (builder.py passes
    cache_dir='./cache_dir')."""
    for repo, src in (("LanguageBind/LanguageBind_Video_merge", VIDEO_TOWER_DIR), ("LanguageBind/LanguageBind_Image", IMAGE_TOWER_DIR)):
        base = work / "cache_dir" / ("models--" + repo.replace("/", "--"))
        snap = base / "snapshots" / FAKE_REVISION
        snap.mkdir(parents=True)
        (base / "refs").mkdir()
        (base / "refs" / "main").write_text(FAKE_REVISION)
        for f in src.iterdir():
            shutil.copy(f, snap / f.name)


def write_llm(LlavaConfig, LlavaLlamaForCausalLM) -> None:
    import torch

    cfg = LlavaConfig(**LLM, **MM)
    torch.manual_seed(stable_seed("original", "llm", "construct"))
    model = LlavaLlamaForCausalLM(cfg).eval()
    for tower in (model.get_image_tower(), model.get_video_tower()):
        tower.load_model()  # as builder.py: the towers come from their own repos
    towers = {n for n, _ in model.named_parameters() if "_tower." in n}
    g = generator(stable_seed("original", "llm", "weights"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in towers:
                continue
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    shards = [[k for k in keys if "_tower." not in k], [k for k in keys if "_tower." in k]]
    shutil.rmtree(LLM_DIR, ignore_errors=True)
    LLM_DIR.mkdir(parents=True)
    weight_map = {}
    for i, names in enumerate(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save({k: state[k] for k in names}, LLM_DIR / fname)
        weight_map.update({k: fname for k in names})
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (LLM_DIR / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    cfg.torch_dtype = "float16"
    cfg.architectures = ["LlavaLlamaForCausalLM"]
    cfg.save_pretrained(LLM_DIR)
    write_tokenizer()
    for f in LLM_DIR.iterdir():
        f.chmod(0o644)


def write_tokenizer() -> None:
    """The demo model's tokenizer without <image>/<video>/<pad>: like vicuna's for the real model, the original
    tokenizer has no placeholder tokens (the -200 ids are inserted by tokenizer_image_token)."""
    src = REPO_ROOT / "assets" / "trained-model"
    tok = json.loads((src / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < VOCAB]
    (LLM_DIR / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=2) + "\n")
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    for key in ("image_token", "video_token", "pad_token", "added_tokens_decoder"):
        cfg.pop(key, None)
    cfg["padding_side"] = "right"
    (LLM_DIR / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_original(LlavaLlamaForCausalLM):
    """builder.load_pretrained_model's model side, in float32 on CPU: from_pretrained, then each tower's
    load_model() (the tokenizer and the float16 casts are left out)."""
    import torch

    model = LlavaLlamaForCausalLM.from_pretrained(str(LLM_DIR), torch_dtype=torch.float32, low_cpu_mem_usage=True)
    for tower in (model.get_image_tower(), model.get_video_tower()):
        if not tower.is_loaded:
            tower.load_model()
        tower.to(dtype=torch.float32)
    return model.eval()


def make_case(name: str, attempt: int):
    """input_ids as tokenizer_image_token makes them (one -200 per image, num_frames per video, in media order) and
    the media list the original forward takes (images [C, H, W], videos [C, T, H, W]), standard-normal pixels."""
    import torch

    g = generator(stable_seed("original", "inputs", name, str(attempt)))
    special = {0, 1, 2}
    pool = [i for i in range(VOCAB) if i not in special]

    def tok(n):
        return [pool[int(i)] for i in torch.randint(0, len(pool), (n,), generator=g)]

    s = VISION["image_size"]
    image = lambda: torch.randn((3, s, s), generator=g)  # noqa: E731
    video = lambda: torch.randn((3, NUM_FRAMES, s, s), generator=g)  # noqa: E731
    frames = [IMAGE_TOKEN_INDEX] * NUM_FRAMES
    if name == "video":
        ids, media, kinds = [1] + tok(5) + frames + tok(6), [video()], ["video"]
    elif name == "mixed":
        ids, media, kinds = [1] + tok(3) + [IMAGE_TOKEN_INDEX] + tok(3) + frames + tok(4), [image(), video()], ["image", "video"]
    elif name == "two_videos":
        ids, media, kinds = [1] + tok(3) + frames + tok(2) + frames + tok(4), [video(), video()], ["video", "video"]
    else:
        raise ValueError(name)
    return torch.tensor([ids], dtype=torch.int64), media, kinds


def run_original_case(model, input_ids, media) -> dict:
    import torch

    out = {}
    images = [m for m in media if m.ndim == 3]
    videos = [m for m in media if m.ndim == 4]
    with torch.no_grad():
        if images:
            batch = torch.stack(images)
            hs = model.get_image_tower().image_tower(batch, output_hidden_states=True).hidden_states
            for k, h in enumerate(hs):
                out[f"image_tower.hidden_states.{k}"] = h
            out["image_features"] = model.encode_images(batch)
        if videos:
            batch = torch.stack(videos)  # [N, C, T, H, W]
            hs = model.get_video_tower().video_tower(batch, output_hidden_states=True).hidden_states  # [N, T, n, D]
            for k, h in enumerate(hs):
                out[f"video_tower.hidden_states.{k}"] = h.reshape(-1, *h.shape[2:])
            f = model.encode_videos(batch)  # [N, T, n, D_text]
            out["video_features"] = f.reshape(-1, *f.shape[2:])

        captured = {}

        def pre_hook(_m, _a, kwargs):
            captured["inputs_embeds"] = kwargs["inputs_embeds"].clone()

        handle = model.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            res = model(input_ids=input_ids, images=media, output_hidden_states=True, use_cache=False, return_dict=True)
        finally:
            handle.remove()
    out["inputs_embeds"] = captured["inputs_embeds"]
    for k, h in enumerate(res.hidden_states):
        out[f"decoder.hidden_states.{k}"] = h
    out["logits"] = res.logits
    assert torch.equal(res.hidden_states[0], captured["inputs_embeds"])
    return out


def run_original_generate(model, input_ids, media) -> dict:
    import torch

    with torch.no_grad():
        gen = model.generate(
            input_ids, images=media, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=MAX_NEW_TOKENS,
            use_cache=True, output_scores=True, return_dict_in_generate=True,
        )
    new = gen.sequences[:, input_ids.shape[1]:]
    scores = torch.stack(list(gen.scores), dim=1).float()
    assert new.shape[1] == MAX_NEW_TOKENS and torch.equal(scores.argmax(-1), new)
    return dict(ids=new.contiguous(), margins=top2_margin(scores))


def write_cases(LlavaLlamaForCausalLM) -> list[str]:
    import torch
    import transformers

    CASES.mkdir(parents=True, exist_ok=True)
    for f in CASES.glob("*.safetensors"):
        f.unlink()
    report = []
    for name in CASE_NAMES:
        for attempt in range(50):
            input_ids, media, kinds = make_case(name, attempt)
            gen = run_original_generate(load_original(LlavaLlamaForCausalLM), input_ids, media)
            if float(gen["margins"].min()) >= MIN_MARGIN:
                break
        else:
            raise RuntimeError(f"{name}: no input attempt gave greedy margins >= {MIN_MARGIN}")
        model = load_original(LlavaLlamaForCausalLM)
        tensors = run_original_case(model, input_ids, media)
        tensors["input_ids"] = input_ids
        tensors["generated_ids"] = gen["ids"]
        images = [m for m in media if m.ndim == 3]
        videos = [m for m in media if m.ndim == 4]
        if images:
            tensors["pixel_values_images"] = torch.stack(images)
        if videos:
            tensors["pixel_values_videos"] = torch.stack(videos).permute(0, 2, 1, 3, 4).contiguous()  # [N, T, C, H, W]
        meta = {
            "case": name,
            "media": dumps(kinds),
            "input_attempt": str(attempt),
            "num_frames": str(NUM_FRAMES),
            "generated_min_margin": repr(float(gen["margins"].min())),
            "input_ids": "tokenizer_image_token layout: one -200 per image, num_frames consecutive -200 per video, "
            "in the order of `media`",
            "pixel_values_videos": "[N, T, C, H, W] (the original takes [C, T, H, W] per video: permuted here, no "
            "arithmetic)",
            "video_tower.hidden_states": "LanguageBind vision_model hidden_states [N, T, n, D] reshaped to [N*T, n, D]; "
            "index 0 = pre_layrnorm(embeddings), k = output of encoder layer k-1",
            "video_features": "encode_videos (tower hidden_states[-2], all tokens) -> mm_projector, [N*T, n, D_text]",
            "image_features": "encode_images (tower hidden_states[-2][:, 1:]) -> mm_projector",
            "inputs_embeds": "LlamaModel inputs_embeds after prepare_inputs_labels_for_multimodal",
            "decoder.hidden_states": "transformers 4.31 LlamaModel: 0 = inputs_embeds, k = layer k-1 output, last = "
            "final norm output",
            "logits": "model(input_ids, images=media) (no attention mask, positions arange)",
            "generation": "model.generate(input_ids, images=media, do_sample=False, max_new_tokens=min_new_tokens="
            f"{MAX_NEW_TOKENS}): new tokens only",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        save_case(CASES / f"{name}.safetensors", tensors, meta)
        report.append(f"original/{name}: min greedy margin {float(gen['margins'].min()):.6f}")
    return report


def write_grads(LlavaLlamaForCausalLM) -> None:
    """d/dθ of sum(hidden_states[-2] * R) for the video tower's vision_model (what LanguageBind trains), in
    train-mode semantics without dropout (all dropouts are 0): every parameter, temporal ones included."""
    import torch

    model = load_original(LlavaLlamaForCausalLM)
    tower = model.get_video_tower().video_tower
    tower.requires_grad_(True)
    g = generator(stable_seed("original", "grads"))
    s = VISION["image_size"]
    videos = torch.randn((2, 3, NUM_FRAMES, s, s), generator=g)
    hs = tower(videos, output_hidden_states=True).hidden_states
    r = torch.randn(hs[-2].shape, generator=g)
    loss = (hs[-2] * r).sum()
    loss.backward()
    tensors = {"pixel_values_videos": videos.permute(0, 2, 1, 3, 4).contiguous(), "weights": r.reshape(-1, *r.shape[2:]),
               "loss": loss.detach().reshape(1)}
    for name, p in tower.named_parameters():
        if p.grad is not None:
            tensors[f"grad.{name}"] = p.grad
    save_case(CASES / "grads.safetensors", tensors, {
        "loss": "sum(vision_model(videos).hidden_states[-2] * weights) with hidden_states[-2] [N, T, n, D] "
        "(weights stored as [N*T, n, D])",
        "grad": "grad.<name> = d loss / d vision_model.<name> (LanguageBind's own parameter names)",
    })


ROWS = [0, 1, 2, 55, 111, 112, 113, 167, 221, 222, 223]  # rows kept of outputs not stored whole


def write_preprocess(root: Path) -> None:
    """The original LanguageBind video transform on given uint8 clips and on a fixture video through decord. Outputs
    are stored whole for two clips; for the others, the rows ROWS of every frame and channel, plus the sha256 of the
    whole float32 output (bit-exactness)."""
    import random

    import numpy as np
    import torch
    from videollava.model.multimodal_encoder.languagebind.video import processing_video as pv

    cfg = type("C", (), {})()
    cfg.vision_config = type("V", (), {"video_decode_backend": "decord", "num_frames": NUM_FRAMES})()
    transform = pv.get_video_transform(cfg)
    tensors, meta = {}, {}

    def store(key: str, out, whole: bool) -> None:
        pixels = out.permute(1, 0, 2, 3).contiguous()  # (C, T, H, W) -> [T, C, 224, 224]
        meta[f"{key}.sha256"] = hashlib.sha256(pixels.numpy().astype("<f4").tobytes()).hexdigest()
        meta[f"{key}.shape"] = dumps(list(pixels.shape))
        tensors[f"{key}.pixels" if whole else f"{key}.rows"] = pixels if whole else pixels[:, :, ROWS, :].contiguous()

    def pattern(h: int, w: int):
        """uint8 (C, 1, H, W) from a closed formula (not stored; the test rebuilds it): smooth ramps plus a
        quadratic term mod 23 for sharp edges."""
        c, y, x = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
        v = (x * 31 + y * 17 + c * 89 + ((x * x + 3 * y * y) % 23) * 11) % 256
        return torch.from_numpy(v.astype(np.uint8)[:, None])

    clips = {"landscape_64x48": (48, 64, True), "portrait_36x60": (60, 36, False), "large_240x232": (232, 240, False),
             "square_224": (224, 224, False), "odd_crop_231x225": (225, 231, False)}
    for name, (h, w, whole) in clips.items():
        clip = pattern(h, w)  # (C, T=1, H, W)
        for flip in (False, True):
            real = random.random
            random.random = (lambda: 0.0) if flip else (lambda: 0.99)  # RandomHorizontalFlipVideo flips when < p
            try:
                out = transform(clip)
            finally:
                random.random = real
            store(f"{name}.{'flipped' if flip else 'plain'}", out, whole and not flip)
    video = FIXTURES / "videos" / "huffyuv.avi"
    real = random.random
    random.random = lambda: 0.99
    try:
        out = pv.load_and_transform_video(str(video), transform, video_decode_backend="decord", num_frames=NUM_FRAMES)
    finally:
        random.random = real
    import decord

    total = len(decord.VideoReader(str(video), ctx=decord.cpu(0)))
    store("file", out, False)
    meta["file"] = f"test/fixtures/videos/{video.name}: load_and_transform_video(decord, num_frames={NUM_FRAMES}), no flip"
    meta["file.total_frames"] = str(total)
    grid = {}
    for total_frames in (1, 3, 7, 8, 9, 17, 100, 1001):
        for n in (1, 4, 8, 16):
            grid[f"{total_frames},{n}"] = np.linspace(0, total_frames - 1, n, dtype=int).tolist()
    meta["frame_indices"] = dumps(grid)
    meta["frame_indices_rule"] = "np.linspace(0, total - 1, n, dtype=int), keyed 'total,n'"
    meta["rows"] = dumps(ROWS)
    meta["clips"] = ("clip <name>_<W>x<H>: one frame, uint8 value (x*31 + y*17 + c*89 + ((x*x + 3*y*y) % 23)*11) % 256 "
                     "at column x, row y, channel c; <name>.plain / .flipped = "
                     "get_video_transform(decord)(clip (C, T, H, W)) as [T, C, 224, 224], with RandomHorizontalFlipVideo's "
                     "random.random() forced to 0.99 (no flip) / 0.0 (flip); '.pixels' = the whole output, '.rows' = "
                     "rows `rows` of it ([T, C, len(rows), 224]); '.sha256' = sha256 of the whole output as float32 LE")
    save_case(CASES / "preprocess.safetensors", tensors, meta)


def phase_original(root: Path) -> None:
    import transformers

    set_deterministic()
    transformers.logging.set_verbosity_error()
    languagebind, LlavaConfig, LlavaLlamaForCausalLM = import_original(root)
    write_towers(languagebind)
    with tempfile.TemporaryDirectory() as work:
        fake_hub_cache(Path(work))
        cwd = os.getcwd()
        os.chdir(work)
        try:
            write_llm(LlavaConfig, LlavaLlamaForCausalLM)
            report = write_cases(LlavaLlamaForCausalLM)
            write_grads(LlavaLlamaForCausalLM)
        finally:
            os.chdir(cwd)
    write_preprocess(root)
    print("\n".join(report))


# -------------------------------------------------------------------------------------------------------------
# Phase "hf" (reference/.venv, transformers 5.24)


def hf_port_state(gelu: bool):
    """The original checkpoint converted as convert_video_llava_weights_to_hf.py does (spec §3.3 renames, inv_freq
    skipped) into a transformers 5.24 VideoLlava whose config is the -hf one at these widths (no hidden_act: CLIP's
    quick_gelu; `gelu` = the original towers' activation instead). Two placeholder rows are appended (ids 601, 602)
    as zeros; logits are compared on the 601 original columns only."""
    import torch
    from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration

    index = json.loads((LLM_DIR / "pytorch_model.bin.index.json").read_text())
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(torch.load(LLM_DIR / shard, map_location="cpu", weights_only=True))
    rules = [
        ("model.video_tower.video_tower", "video_tower"), ("model.image_tower.image_tower", "image_tower"),
        ("model.mm_projector", "multi_modal_projector"), ("model", "language_model.model"), ("lm_head", "language_model.lm_head"),
        ("video_tower", "video_tower.vision_model"), ("image_tower", "image_tower.vision_model"),
        ("multi_modal_projector.0", "multi_modal_projector.linear_1"), ("multi_modal_projector.2", "multi_modal_projector.linear_2"),
    ]
    converted = {}
    for key, value in state.items():
        if key.endswith(".inv_freq"):
            continue
        for old, new in rules:
            if old in key:
                key = key.replace(old, new)
        converted[key] = value.float()
    vision = {k: v for k, v in VISION.items() if k != "hidden_act" or gelu}
    text = {k: v for k, v in LLM.items() if k not in ("tie_word_embeddings",)}
    text["vocab_size"] = VOCAB + 2
    cfg = VideoLlavaConfig(text_config=dict(model_type="llama", **text), vision_config=dict(model_type="clip_vision_model", **vision),
                           image_token_index=VOCAB, video_token_index=VOCAB + 1, pad_token_id=0, vision_feature_layer=-2,
                           vision_feature_select_strategy="default", projector_hidden_act="gelu", tie_word_embeddings=False)
    for key in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
        converted[key] = torch.cat([converted[key], torch.zeros(2, converted[key].shape[1])])
    model = VideoLlavaForConditionalGeneration(cfg)
    renamed = {}
    for key, value in converted.items():  # 5.24's load-time renames (its _checkpoint_conversion_mapping)
        if key.startswith("language_model.lm_head."):
            key = key[len("language_model."):]
        elif key.startswith("language_model.model."):
            key = "model.language_model." + key[len("language_model.model."):]
        else:
            key = "model." + key.replace(".vision_model.", ".", 1)
        renamed[key] = value
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    assert not missing, missing
    dropped = sorted(unexpected)
    assert dropped and all(("temporal" in k) or k.endswith("position_ids") for k in dropped), dropped
    return model.eval(), len(dropped)


def phase_hf() -> None:
    import torch
    from safetensors import safe_open

    set_deterministic()
    tensors, meta = {}, {}
    for gelu in (False, True):
        model, dropped = hf_port_state(gelu)
        tag = "hf_port_gelu" if gelu else "hf_port"
        for name in CASE_NAMES:
            with safe_open(str(CASES / f"{name}.safetensors"), "pt") as f:
                ids = f.get_tensor("input_ids")
                kinds = json.loads(f.metadata()["media"])
                images = f.get_tensor("pixel_values_images") if "pixel_values_images" in f.keys() else None
                videos = f.get_tensor("pixel_values_videos") if "pixel_values_videos" in f.keys() else None
                original = f.get_tensor("logits")
            per_image = (VISION["image_size"] // VISION["patch_size"]) ** 2
            expanded, k = [], 0
            frame_kinds = [kind for kind in kinds for _ in range(1 if kind == "image" else NUM_FRAMES)]
            for t in ids[0].tolist():
                if t != IMAGE_TOKEN_INDEX:
                    expanded.append(t)
                    continue
                kind = frame_kinds[k]
                k += 1
                expanded += [VOCAB] * per_image if kind == "image" else [VOCAB + 1] * (per_image + 1)
            kwargs = dict(input_ids=torch.tensor([expanded]))
            if images is not None:
                kwargs["pixel_values"] = images
            if videos is not None:
                kwargs["pixel_values_videos"] = videos
            with torch.no_grad():
                logits = model(**kwargs).logits[..., :VOCAB]
            if name == "video":
                tensors[f"{name}.{tag}.logits"] = logits
            scale = original.std().item()
            meta[f"{name}.{tag}.max_abs_diff_over_logit_std"] = repr(((logits - original).abs().max() / scale).item())
            diff = (logits - original).abs().max().item()
            meta[f"{name}.{tag}.max_abs_diff_vs_original"] = repr(diff)
            meta[f"{name}.{tag}.argmax_agreement"] = repr((logits.argmax(-1) == original.argmax(-1)).float().mean().item())
        meta[f"{tag}.dropped_keys"] = str(dropped)
    meta["hf_port"] = ("transformers 5.24 VideoLlavaForConditionalGeneration on the original checkpoint converted by the "
                       "rules of convert_video_llava_weights_to_hf.py (strict=False drops every temporal weight), "
                       "vision_config without hidden_act (quick_gelu, as the published -hf config.json); logits [:, :, :601]")
    meta["hf_port_gelu"] = "the same with the towers' own hidden_act (gelu): only the temporal block is missing"
    save_case(CASES / "hf_port.safetensors", tensors, meta)
    for k in sorted(meta):
        if "max_abs_diff" in k:
            print(f"{k}: {meta[k]}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--phase-original":
        phase_original(Path(sys.argv[2]))
        return
    root = os.environ.get(SRC_ENV)
    if not root:
        print(no_sources_message())
        return
    check_sources(Path(root))
    python = ensure_original_venv()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    subprocess.run([str(python), str(Path(__file__).resolve()), "--phase-original", str(Path(root).resolve())], check=True, env=env)
    phase_hf()


if __name__ == "__main__":
    main()
