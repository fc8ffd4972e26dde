"""Checks the shipped trained demo model (assets/trained-model, issue 8) in Python transformers 5.24.

Read only: it writes nothing. It loads what test/demo/trained_model.test.ts wrote under REGENERATE_TS_OUTPUTS=1
(test/fixtures/demo/: ts_outputs.safetensors, image.png) and fails loudly when Python disagrees:

  1. tokenizer   AutoTokenizer.from_pretrained(assets/trained-model) encodes every prompt phrasing and a few hundred
                 answer/next-turn texts to exactly the ids the TypeScript tokenizer gave;
  2. processor   VideoLlavaProcessor built from the model folder's files (image processor from
                 preprocessor_config.json, tokenizer, processor_config.json fields, chat_template.jinja) gives the same
                 input_ids and pixel values for the image prompt (image.png) and for the sample video
                 (assets/sample-shapes.mp4, 8 frames decoded with PyAV as the Hugging Face docs do); the chat template
                 renders the prompt the CLI builds;
  3. model       VideoLlavaForConditionalGeneration.from_pretrained loads every weight (no missing or unexpected
                 key) and its logits at the last positions of both prompts match the TypeScript logits;
  4. generation  greedy generate() answers both prompts as the TypeScript model does (printed).

The video processor of transformers 5.24 needs torchvision, which cannot be installed beside the pinned torch;
as in gen_processor.py, frames go through the slow Pillow image pipeline with the same settings instead.

Run: /work/.venv-ref/bin/python reference/check_demo.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoTokenizer, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor, VideoLlavaProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, REPO_ROOT, set_deterministic  # noqa: E402
from gen_processor import FRAME_SETTINGS, PillowFramesVideoProcessor, export_video_processor_mixin  # noqa: E402
from gen_videos import read_video_pyav  # noqa: E402

MODEL = REPO_ROOT / "assets" / "trained-model"
FIX = FIXTURES / "demo"
# float32 forward of the same weights in another framework: summation orders differ (sgemm blocking, softmax,
# the attention kernels), which moves logits of magnitude ~10-20 by up to ~1e-5
LOGITS_ATOL = 1e-4
PIXELS_ATOL = 1e-6  # both sides are the Pillow-exact uint8 pipeline; only float32 normalisation rounding remains


def fail(message: str) -> None:
    print(f"FAIL: {message}")
    sys.exit(1)


def load_processor(tokenizer) -> VideoLlavaProcessor:
    export_video_processor_mixin()
    image_processor = VideoLlavaImageProcessor.from_pretrained(str(MODEL))
    video_processor = PillowFramesVideoProcessor(**{k: getattr(image_processor, k) for k in FRAME_SETTINGS})
    fields = json.loads((MODEL / "processor_config.json").read_text())
    return VideoLlavaProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        patch_size=fields["patch_size"],
        vision_feature_select_strategy=fields["vision_feature_select_strategy"],
        num_additional_image_tokens=fields["num_additional_image_tokens"],
        chat_template=(MODEL / "chat_template.jinja").read_text(),
    )


def read_sample(path: Path, num_frames: int = 8) -> np.ndarray:
    with av.open(str(path)) as c:
        total = sum(1 for _ in c.decode(video=0))
    indices = np.arange(0, total, total / num_frames).astype(int)
    with av.open(str(path)) as c:
        return read_video_pyav(c, indices)


def main() -> None:
    set_deterministic()
    ts_file = FIX / "ts_outputs.safetensors"
    if not ts_file.exists():
        fail(f"{ts_file.relative_to(REPO_ROOT)} is missing: run REGENERATE_TS_OUTPUTS=1 npx jest test/demo first")
    with safe_open(str(ts_file), "pt") as f:
        meta = f.metadata()
        ts = {k: f.get_tensor(k) for k in f.keys()}

    # 1. tokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    texts, ts_ids = json.loads(meta["texts"]), json.loads(meta["ids"])
    bad = [t for t, ids in zip(texts, ts_ids) if tokenizer(t).input_ids != ids]
    if bad:
        fail(f"{len(bad)} of {len(texts)} texts tokenize differently, e.g. {bad[0]!r}: "
             f"{tokenizer.convert_ids_to_tokens(tokenizer(bad[0]).input_ids)}")
    print(f"tokenizer: {len(texts)} texts encode to the TypeScript ids ({len(tokenizer)} tokens)")

    # 2. processor
    processor = load_processor(tokenizer)
    question = meta["video_prompt"].split("\n", 1)[1].rsplit(" ASSISTANT:", 1)[0]
    chat = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    rendered = processor.apply_chat_template(chat, add_generation_prompt=True)
    if rendered != meta["video_prompt"]:
        fail(f"chat template renders {rendered!r}, the CLI prompt is {meta['video_prompt']!r}")
    image = processor(text=meta["image_prompt"], images=Image.open(FIX / "image.png"), return_tensors="pt")
    video = processor(text=meta["video_prompt"], videos=[read_sample(REPO_ROOT / meta["video_file"])], return_tensors="pt")
    for name, got, key in [("image", image, "pixel_values_images"), ("video", video, "pixel_values_videos")]:
        if got["input_ids"].tolist() != ts[f"{name}.input_ids"].long().tolist():
            fail(f"{name}: input_ids differ from TypeScript's")
        d = (got[key] - ts[f"{name}.{key}"]).abs().max().item()
        print(f"processor {name}: input_ids equal ({got['input_ids'].shape[1]} tokens), {key} max diff {d:.3g}")
        if d > PIXELS_ATOL:
            fail(f"{name}: {key} differ by {d}")

    # 3. model
    model, info = VideoLlavaForConditionalGeneration.from_pretrained(
        str(MODEL), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        fail(f"loading info: {problems}")
    model.eval()
    answers = {}
    for name, inputs in [("image", image), ("video", video)]:
        with torch.no_grad():
            logits = model(**inputs).logits
        tail = ts[f"{name}.logits_tail"]
        d = (logits[:, -tail.shape[1]:] - tail).abs().max().item()
        same_argmax = torch.equal(logits[:, -tail.shape[1]:].argmax(-1), tail.argmax(-1))
        print(f"model {name}: logits of the last {tail.shape[1]} positions max diff {d:.3g} "
              f"(scale {tail.abs().max().item():.3g}), argmax {'equal' if same_argmax else 'DIFFERENT'}")
        if d > LOGITS_ATOL or not same_argmax:
            fail(f"{name}: logits differ from TypeScript's by {d}")
        # 4. generation
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        answers[name] = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        print(f"generate {name}: {meta[f'{name}_prompt'].splitlines()[-1]!r} -> {answers[name]!r}")
    print("OK: the TypeScript-trained checkpoint loads and runs in Python transformers with matching outputs")


if __name__ == "__main__":
    main()
