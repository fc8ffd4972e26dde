"""Writes the embedded demo checkpoint the README's main command runs: assets/demo-model/.

A tiny RANDOM Video-LLaVA (the real architecture at toy width: CLIP towers at 224 px with 32 px patches,
a 2-layer Llama with silu, the small Llama-style tokenizer of test/fixtures/tokenizer/small with <image>,
<video> and <pad>) so that `npm install` plus one command runs the whole pipeline offline: video decoding,
preprocessing, both towers, projector, decoder, KV-cache generation and streaming. Its answers are noise
until a trained model ships (issue 8). Also copies a sample video to assets/sample.mp4.

Run through `npm run reference`; deterministic (same bytes every run).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, VideoLlavaConfig, VideoLlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from common import FIXTURES, REPO_ROOT, set_deterministic, stable_seed  # noqa: E402

OUT = REPO_ROOT / "assets" / "demo-model"
TOKENIZER = FIXTURES / "tokenizer" / "small"
PREPROCESSOR = FIXTURES / "images" / "preprocessor_config.json"
PATCH = 32


def main() -> None:
    set_deterministic()
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    vocab = ((len(tok) + 63) // 64) * 64  # padded to a multiple of 64 as the real conversion did
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<image>", "<video>", "<pad>")}
    cfg = VideoLlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, image_size=224, patch_size=PATCH, projection_dim=64,
        ),
        text_config=dict(
            model_type="llama", vocab_size=vocab, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5,
            pad_token_id=ids["<pad>"], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            tie_word_embeddings=False,
        ),
        image_token_index=ids["<image>"], video_token_index=ids["<video>"], pad_token_id=ids["<pad>"],
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(stable_seed("demo-model"))
    model = VideoLlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.2)
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT)
    tok.save_pretrained(OUT)
    shutil.copyfile(PREPROCESSOR, OUT / "preprocessor_config.json")
    (OUT / "processor_config.json").write_text(json.dumps({
        "processor_class": "VideoLlavaProcessor", "patch_size": PATCH, "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1, "image_token": "<image>", "video_token": "<video>",
    }, indent=2, sort_keys=True) + "\n")
    (OUT / "README.md").write_text(
        "# demo-model\n\nA tiny random Video-LLaVA checkpoint (real architecture at toy width) written by "
        "reference/gen_demo.py, so the CLI runs offline out of the box. Its answers are noise.\n")
    shutil.copyfile(FIXTURES / "videos" / "h264_yuv420p.mp4", REPO_ROOT / "assets" / "sample.mp4")
    print(f"wrote {OUT} ({sum(p.numel() for p in model.parameters())} parameters, vocab {vocab})")


if __name__ == "__main__":
    main()
