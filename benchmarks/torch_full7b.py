"""PyTorch bfloat16 on the synthetic full-size Video-LLaVA-7B (benchmarks/full7b.ts): the anchor of `npm run bench:7b`.

Reads the inputs `video-llava preprocess` wrote (the same ids and pixels the TypeScript run gets), loads the folder
with torch_dtype=bfloat16 (float32 does not fit in 24 GB), and prints one JSON line: load, vision, time to first token
(one forward over the prompt, vision included), prefill and decode rates (greedy generate of --new-tokens tokens, the
first one excluded), peak RSS.
"""
import argparse
import json
import resource
import time

import torch
from safetensors.torch import load_file
from transformers import VideoLlavaForConditionalGeneration
import transformers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    t0 = time.perf_counter()
    model = VideoLlavaForConditionalGeneration.from_pretrained(a.dir, dtype=torch.bfloat16)
    model.eval()
    load_ms = (time.perf_counter() - t0) * 1000

    raw = load_file(a.inputs)
    inputs = {"input_ids": raw["input_ids"], "attention_mask": raw["attention_mask"]}
    for key in ("pixel_values_images", "pixel_values_videos"):
        if key in raw:
            inputs[key] = raw[key].to(torch.bfloat16)
    prompt_tokens = int(inputs["input_ids"].shape[1])

    with torch.inference_mode():
        t0 = time.perf_counter()
        if "pixel_values_videos" in inputs:
            model.model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"], vision_feature_layer=-2)
        else:
            model.get_image_features(pixel_values=inputs["pixel_values_images"], vision_feature_layer=-2, vision_feature_select_strategy="default")
        vision_ms = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        model(**inputs, use_cache=True, logits_to_keep=1)
        ttft_ms = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False)
        total_ms = (time.perf_counter() - t0) * 1000
    new = int(out.shape[1]) - prompt_tokens
    decode_ms = max(total_ms - ttft_ms, 1e-9)
    print(json.dumps({
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "threads": a.threads,
        "loadMs": load_ms,
        "visionMs": vision_ms,
        "timeToFirstTokenMs": ttft_ms,
        "promptTokens": prompt_tokens,
        "prefillTokensPerSec": prompt_tokens / ((ttft_ms - vision_ms) / 1000),
        "decodeTokensPerSec": (new - 1) / (decode_ms / 1000),
        "newTokens": new,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
