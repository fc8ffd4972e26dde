"""VideoLlavaProcessor fixtures (test/fixtures/processor/).

Runs the real `VideoLlavaProcessor` of transformers 5.24 (ProcessorMixin.__call__: placeholder-count checks,
placeholder expansion through `replace_image_token` / `replace_video_token`, the tokenizer with its left padding
and truncation, and the post-tokenization count check) on text, images and videos, and records what it returns.

How the reference works without torchvision (read this before trusting the video numbers)
-----------------------------------------------------------------------------------------
In transformers 5.24 the video half of the processor is `VideoLlavaVideoProcessor` (a `BaseVideoProcessor`),
whose preprocessing runs on torchvision, and torchvision cannot be installed next to the pinned torch. Two
things are done about it, and nothing else is changed:

1. Construction. `ProcessorMixin.__init__` checks each sub-processor with
   `isinstance(arg, transformers.VideoProcessorMixin)`. Without torchvision the top-level `transformers` module
   does not export `VideoProcessorMixin` (it exists, in `transformers.video_processing_utils`), so the lookup
   falls through to a registry attribute that is absent and raises
   "VIDEO_PROCESSOR_MAPPING has no attribute _extra_content". `export_video_processor_mixin()` puts the real
   class on the module object that `processing_utils` looks in; the isinstance check itself still runs.
   `VideoLlavaVideoProcessor()` itself constructs without torchvision (only its preprocessing needs it), so the
   processor that `save_pretrained` writes is the genuine one. Reading it back, `VideoLlavaProcessor.from_pretrained`
   fails only where AutoVideoProcessor resolves to a torchvision dummy class, so `load_processor()` does what
   from_pretrained does with the sub-processors' own classes: each one's `from_pretrained` on the saved folder,
   then the processor's own `get_processor_dict` + `from_args_and_dict`.

2. Video pixels. The video processor of the loaded processor is replaced by `PillowFramesVideoProcessor`, a
   subclass of `VideoLlavaVideoProcessor` with the same config whose only change is `preprocess`: it runs the
   slow (Pillow) `VideoLlavaImageProcessor` with the video processor's settings on every frame and stacks the
   results into `pixel_values_videos` [N, T, 3, H, W]. This is what transformers v4.41 to ~v4.51 did for videos
   (spec sections 0.6, 4.3, 4.4) and it is the parity target of the TypeScript port (bit-exact Pillow
   resampling); the torchvision path of 5.24 rounds differently. The rest of the call (expansion with
   `replace_video_token`, counts, tokenizer, checks) is transformers' own code.

Frames come from the test videos of test/fixtures/videos, decoded with PyAV as the Hugging Face docs'
`read_video_pyav` does (imported from gen_videos.py), with `indices = np.arange(0, total, total / n).astype(int)`
over the frames actually decoded. Images are passed as file paths (transformers' `load_image`).

Outputs
  model/            the processor as `save_pretrained` writes it in 5.24 (tokenizer.json, tokenizer_config.json,
                    processor_config.json with nested image_processor / video_processor, chat_template.jinja)
  cases.json        per case: texts, media, options, and either the expected shapes and SHA-256 of the full
                    float32 pixel tensors (little-endian, C order) or the Python error it raised
  expected.safetensors
    <case>/input_ids, <case>/attention_mask   I32 [B, L] (I32 to halve the file; the values are small)
    <case>/frame_indices                      I32 [N_videos, T]
    <case>/pixel_values_images_sub            F32 flat, pixel_values_images.ravel()[::SUB_STRIDE]
    <case>/pixel_values_videos_sub            F32 flat, pixel_values_videos.ravel()[::SUB_STRIDE]
    image/pixel_values_images                 F32 [1, 3, 224, 224], in full for one case

Run with the pinned reference venv: `npm run reference`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import av
import numpy as np
import torch
import transformers
from transformers import AutoTokenizer, BatchFeature, VideoLlavaImageProcessor, VideoLlavaProcessor
from transformers import processing_utils
from transformers.video_utils import make_batched_videos
from transformers.models.video_llava.video_processing_video_llava import VideoLlavaVideoProcessor
from transformers.video_processing_utils import VideoProcessorMixin
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_videos import read_video_pyav  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "processor"
MODEL = OUT / "model"
TOKENIZER = ROOT / "test" / "fixtures" / "tokenizer" / "small"
IMAGES = ROOT / "test" / "fixtures" / "images"
VIDEOS = ROOT / "test" / "fixtures" / "videos"
SUB_STRIDE = 997  # prime, so the subsample walks across channels, rows and columns

# preprocessor_config.json of the checkpoint (spec section 4.3), without the two bookkeeping keys.
CLIP_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}
FRAME_SETTINGS = list(CLIP_CONFIG)


def export_video_processor_mixin() -> None:
    """Workaround 1 (see the module docstring): make `VideoProcessorMixin` resolvable for the class check."""
    module = processing_utils.transformers_module
    if not hasattr(module, "VideoProcessorMixin"):
        setattr(module, "VideoProcessorMixin", VideoProcessorMixin)


class PillowFramesVideoProcessor(VideoLlavaVideoProcessor):
    """Workaround 2: VideoLlavaVideoProcessor whose preprocessing is the slow Pillow image pipeline per frame."""

    def preprocess(self, videos, return_tensors=None, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected video kwargs {sorted(kwargs)}")
        frames_processor = VideoLlavaImageProcessor(**{k: getattr(self, k) for k in FRAME_SETTINGS})
        clips = []
        for video in make_batched_videos(videos):
            out = frames_processor(list(video), return_tensors=None)  # legacy key: pixel_values_images
            clips.append(np.stack(out["pixel_values_images"]))  # [T, 3, H, W] float32
        return BatchFeature({"pixel_values_videos": np.stack(clips)}, tensor_type=return_tensors)


def read_frames(name: str, num_frames: int) -> tuple[np.ndarray, list[int]]:
    """RGB24 frames [T, H, W, 3] and their frame numbers, as read_video_pyav returns them."""
    path = VIDEOS / name
    with av.open(str(path)) as c:
        total = sum(1 for _ in c.decode(video=0))
    indices = np.arange(0, total, total / num_frames).astype(int)
    with av.open(str(path)) as c:
        clip = read_video_pyav(c, indices)
    kept = [i for i in range(total) if i in indices]
    assert clip.shape[0] == len(kept), (name, clip.shape, kept)
    return clip, kept


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def build_model_dir(chat_template: str) -> None:
    """Saves a genuine VideoLlavaProcessor (genuine VideoLlavaVideoProcessor included) with save_pretrained."""
    if MODEL.exists():
        shutil.rmtree(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    processor = VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(**CLIP_CONFIG),
        video_processor=VideoLlavaVideoProcessor(**CLIP_CONFIG),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    processor.save_pretrained(str(MODEL))


def load_processor() -> VideoLlavaProcessor:
    """`VideoLlavaProcessor.from_pretrained(MODEL)` without its one torchvision-bound step: AutoVideoProcessor
    resolves to a torchvision dummy, so the three sub-processors are loaded by their own classes' from_pretrained
    (each reads processor_config.json first) and handed to the processor's own from_args_and_dict."""
    processor_dict, _ = VideoLlavaProcessor.get_processor_dict(str(MODEL))
    args = [
        VideoLlavaImageProcessor.from_pretrained(str(MODEL)),
        VideoLlavaVideoProcessor.from_pretrained(str(MODEL)),
        AutoTokenizer.from_pretrained(str(MODEL)),
    ]
    assert VideoLlavaProcessor.get_attributes() == ["image_processor", "video_processor", "tokenizer"]
    processor = VideoLlavaProcessor.from_args_and_dict(args, processor_dict)
    assert processor.chat_template is not None and processor.patch_size == 14
    video_config = {k: getattr(processor.video_processor, k) for k in FRAME_SETTINGS}
    processor.video_processor = PillowFramesVideoProcessor(**video_config)
    return processor


# name, text(s), image files, (video file, num_frames) list, tokenizer options. Options use the TS names.
CASES: list[dict] = [
    dict(name="text_only", text="USER: What is the capital of France? ASSISTANT:"),
    dict(name="image", text="USER: <image>\nWhat is shown in this image? ASSISTANT:", images=["grad_640x480.png"]),
    dict(name="video", text="USER: <video>\nWhy is this video funny? ASSISTANT:", videos=[["ffv1.mkv", 8]]),
    dict(name="video_4_frames", text="USER: <video>\nDescribe the motion. ASSISTANT:", videos=[["x264rgb.mp4", 4]]),
    dict(name="video_short", text="USER: <video>\nHow many frames? ASSISTANT:", videos=[["huffyuv.avi", 8]]),
    dict(name="image_and_video", text="USER: <image>\n<video>\nDo they match? ASSISTANT:",
         images=["photo_240x180.jpg"], videos=[["h264_yuv420p.mp4", 8]]),
    dict(name="batch_left_padding",
         text=["USER: <image>\nDescribe it. ASSISTANT:", "USER: <video>\nWhat happens here, in detail? ASSISTANT:",
               "USER: Hello ASSISTANT:"],
         images=["grad_300x200.png"], videos=[["ffv1.mkv", 8]], options={"padding": True}),
    dict(name="chat_template", chat=[{"role": "user", "content": [{"type": "video"},
                                                                   {"type": "text", "text": "Why is this funny?"}]}],
         videos=[["h264_yuv420p.mp4", 8]]),
    # Python raises in each of these; the test checks that TypeScript raises a typed InputError too.
    dict(name="truncation_cuts_placeholders", text="USER: <image>\nWhat is this? ASSISTANT:",
         images=["grad_300x200.png"], options={"truncation": True, "maxLength": 100}),
    dict(name="more_placeholders_than_images", text="USER: <image> and <image> ASSISTANT:",
         images=["grad_300x200.png"]),
    dict(name="more_videos_than_placeholders", text="USER: <video>\nWhat? ASSISTANT:",
         videos=[["ffv1.mkv", 8], ["x264rgb.mp4", 8]]),
    dict(name="placeholder_without_media", text="USER: <video>\nWhat? ASSISTANT:"),
    dict(name="media_without_placeholder", text="USER: What? ASSISTANT:", images=["grad_300x200.png"]),
    dict(name="batch_needs_padding", text=["USER: Hi ASSISTANT:", "USER: A longer question here ASSISTANT:"]),
]

PYTHON_OPTION_NAMES = {"padding": "padding", "truncation": "truncation", "maxLength": "max_length"}


def run_case(processor: VideoLlavaProcessor, case: dict, tensors: dict[str, np.ndarray]) -> dict:
    name = case["name"]
    record: dict = {k: case[k] for k in ("name", "text", "chat", "images", "videos", "options") if k in case}
    text = case.get("text")
    if "chat" in case:
        text = processor.apply_chat_template(case["chat"], add_generation_prompt=True, tokenize=False)
        record["rendered"] = text
    images = [str(IMAGES / f) for f in case.get("images", [])] or None
    clips, indices = [], []
    for file, n in case.get("videos", []):
        clip, kept = read_frames(file, n)
        clips.append(clip)
        indices.append(kept)
    kwargs = {PYTHON_OPTION_NAMES[k]: v for k, v in case.get("options", {}).items()}
    try:
        out = processor(text=text, images=images, videos=clips or None, **kwargs)
    except ValueError as e:
        record["error"] = str(e)
        print(f"{name:32s} raises: {str(e)[:100]}")
        return record

    assert set(out.keys()) <= {"input_ids", "attention_mask", "pixel_values_images", "pixel_values_videos"}, out.keys()
    tensors[f"{name}/input_ids"] = out["input_ids"].numpy().astype(np.int32)
    tensors[f"{name}/attention_mask"] = out["attention_mask"].numpy().astype(np.int32)
    record["input_ids_shape"] = list(out["input_ids"].shape)
    for key in ("pixel_values_images", "pixel_values_videos"):
        if key not in out:
            continue
        values = out[key].numpy()
        assert values.dtype == np.float32, values.dtype
        record[f"{key}_shape"] = list(values.shape)
        record[f"{key}_sha256"] = sha256(values)
        tensors[f"{name}/{key}_sub"] = np.ascontiguousarray(values.ravel()[::SUB_STRIDE])
    if indices:
        tensors[f"{name}/frame_indices"] = np.array(indices, dtype=np.int32)
    if name == "image":
        tensors["image/pixel_values_images"] = out["pixel_values_images"].numpy()
    print(f"{name:32s} input_ids {record['input_ids_shape']}")
    return record


def main() -> None:
    torch.set_num_threads(1)
    export_video_processor_mixin()
    chat_template = json.loads((ROOT / "test" / "fixtures" / "tokenizer" / "expected.json").read_text())
    build_model_dir(chat_template["chat_template"]["template"])
    processor = load_processor()

    tensors: dict[str, np.ndarray] = {}
    records = [run_case(processor, case, tensors) for case in CASES]
    reference = (
        "transformers VideoLlavaProcessor.__call__ (expansion, counts, tokenizer, checks); images through the slow "
        "Pillow VideoLlavaImageProcessor; videos through the same Pillow image pipeline frame by frame "
        "(PillowFramesVideoProcessor stand-in for the torchvision VideoLlavaVideoProcessor, see gen_processor.py)"
    )
    info = {
        "reference": reference,
        "transformers": transformers.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
        "sub_stride": SUB_STRIDE,
        "model_dir": "model",
    }
    doc = {"info": info, "cases": records}
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    # One metadata key: safetensors writes several keys in an unstable order.
    save_file(tensors, str(OUT / "expected.safetensors"), metadata={"info": json.dumps(info, sort_keys=True)})


if __name__ == "__main__":
    main()
