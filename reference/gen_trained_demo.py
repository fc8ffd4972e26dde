"""Reference outputs of the shipped trained demo model (assets/trained-model, issue 8) from Python transformers 5.24.

The checkpoint was trained by this project's TypeScript code (examples/train_demo); this script proves it is a
regular Hugging Face checkpoint and gives test/demo/trained_model.test.ts the values to compare against. Inputs
come from test/fixtures/demo/inputs.json and image.png (written by that test under REGENERATE_TS_OUTPUTS=1: the
prompts the CLI builds, every question phrasing and a few hundred answer/next-turn texts) and the shipped sample
video. It writes test/fixtures/demo/python_outputs.safetensors:

  1. tokenizer   AutoTokenizer.from_pretrained(assets/trained-model) ids of every text (metadata "ids");
  2. processor   VideoLlavaProcessor built from the model folder's files (image processor from
                 preprocessor_config.json, tokenizer, processor_config.json fields, chat_template.jinja): input_ids
                 and pixel values of the image prompt (image.png) and of the sample video (assets/sample-shapes.mp4,
                 8 frames decoded with PyAV as the Hugging Face docs do); it fails when the chat template does not
                 render the prompt the CLI builds;
  3. model       VideoLlavaForConditionalGeneration.from_pretrained must load every weight (no missing or
                 unexpected key): logits at the last positions of both prompts;
  4. generation  greedy generate() ids for both prompts (16 new tokens at most).

The video processor of transformers 5.24 needs torchvision, which cannot be installed beside the pinned torch;
as in gen_processor.py, frames go through the slow Pillow image pipeline with the same settings instead.

Run: /work/.venv-ref/bin/python reference/gen_trained_demo.py      (part of `npm run reference`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor, VideoLlavaProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, REPO_ROOT, set_deterministic  # noqa: E402
from gen_processor import FRAME_SETTINGS, PillowFramesVideoProcessor, export_video_processor_mixin  # noqa: E402
from gen_videos import read_video_pyav  # noqa: E402

MODEL = REPO_ROOT / "assets" / "trained-model"
FIX = FIXTURES / "demo"
LOGITS_KEPT = 6  # last positions of each prompt (the ones that choose the answer)
MAX_NEW_TOKENS = 16


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
    inputs_file = FIX / "inputs.json"
    if not inputs_file.exists():
        fail(f"{inputs_file.relative_to(REPO_ROOT)} is missing: run REGENERATE_TS_OUTPUTS=1 npx jest test/demo first")
    meta = json.loads(inputs_file.read_text())

    # 1. tokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    ids = [tokenizer(t).input_ids for t in meta["texts"]]
    print(f"tokenizer: {len(ids)} texts ({len(tokenizer)} tokens)")

    # 2. processor
    processor = load_processor(tokenizer)
    question = meta["video_prompt"].split("\n", 1)[1].rsplit(" ASSISTANT:", 1)[0]
    chat = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    rendered = processor.apply_chat_template(chat, add_generation_prompt=True)
    if rendered != meta["video_prompt"]:
        fail(f"chat template renders {rendered!r}, the CLI prompt is {meta['video_prompt']!r}")
    cases = {
        "image": processor(text=meta["image_prompt"], images=Image.open(FIX / "image.png"), return_tensors="pt"),
        "video": processor(text=meta["video_prompt"], videos=[read_sample(REPO_ROOT / meta["video_file"])], return_tensors="pt"),
    }

    # 3. model, 4. generation
    model, info = VideoLlavaForConditionalGeneration.from_pretrained(
        str(MODEL), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        fail(f"loading info: {problems}")
    model.eval()
    out: dict[str, torch.Tensor] = {}
    answers = {}
    for name, inputs in cases.items():
        key = f"pixel_values_{name}s"
        with torch.no_grad():
            logits = model(**inputs).logits
            generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = generated[:, inputs["input_ids"].shape[1]:]
        out[f"{name}.input_ids"] = inputs["input_ids"].to(torch.int64).contiguous()
        out[f"{name}.{key}"] = inputs[key].to(torch.float32).contiguous()
        out[f"{name}.logits_tail"] = logits[:, -LOGITS_KEPT:].contiguous()
        out[f"{name}.generated_ids"] = new.to(torch.int64).contiguous()
        answers[name] = tokenizer.decode(new[0], skip_special_tokens=True)
        print(f"{name}: {inputs['input_ids'].shape[1]} tokens; {meta[f'{name}_prompt'].splitlines()[-1]!r} -> {answers[name]!r}")
    save_file(out, str(FIX / "python_outputs.safetensors"), metadata={"ids": json.dumps(ids), "answers": json.dumps(answers)})
    print(f"wrote {(FIX / 'python_outputs.safetensors').relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
