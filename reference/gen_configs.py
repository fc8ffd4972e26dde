"""Config default-filling fixtures: config.json inputs and what transformers' config classes make of them.

For each input (a minimal {}, the published LanguageBind/Video-LLaVA-7B-hf config.json as described in the
reference notes, a legacy rope_scaling text config, a list-valued vision_feature_layer), writes
test/fixtures/configs/<name>.json = {"input": ..., "expected": {...the fields our parser fills...}} with the
expected values read back from VideoLlavaConfig(**input). Deterministic.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import VideoLlavaConfig

sys.path.insert(0, str(Path(__file__).parent))
from common import FIXTURES  # noqa: E402

OUT = FIXTURES / "configs"

# The -hf config.json (written by transformers 4.41.0.dev0), as the reference notes §2 describe it.
HF_7B = {
    "architectures": ["VideoLlavaForConditionalGeneration"],
    "ignore_index": -100,
    "image_token_index": 32000,
    "model_type": "video_llava",
    "pad_token_id": 32002,
    "projector_hidden_act": "gelu",
    "text_config": {
        "_name_or_path": "lmsys/vicuna-7b-v1.5",
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "pad_token_id": 0,
        "rms_norm_eps": 1e-05,
        "torch_dtype": "float16",
        "vocab_size": 32064,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.0.dev0",
    "video_token_index": 32001,
    "vision_config": {
        "hidden_size": 1024,
        "image_size": 224,
        "intermediate_size": 4096,
        "model_type": "clip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "patch_size": 14,
        "projection_dim": 768,
        "vocab_size": 32000,
    },
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "vocab_size": 32064,
}

INPUTS = {
    "empty": {"model_type": "video_llava"},
    "video_llava_7b_hf": HF_7B,
    "legacy_rope_scaling": {
        "model_type": "video_llava",
        "text_config": {"model_type": "llama", "rope_theta": 500000.0, "max_position_embeddings": 64,
                        "rope_scaling": {"type": "linear", "factor": 4.0}, "num_key_value_heads": 8},
        "vision_feature_layer": [-3, -1],
        "vision_feature_select_strategy": "full",
        "multimodal_projector_bias": False,
    },
    # A vision_config dict gets plain CLIPVisionConfig defaults (not the ViT-L ones used when it is absent).
    "vision_partial": {"model_type": "video_llava",
                       "vision_config": {"model_type": "clip_vision_model", "hidden_size": 64, "num_attention_heads": 4}},
}

# Inputs transformers rejects: the fixture records the error; our parser must reject them too.
ERROR_INPUTS = {
    "error_heads_not_dividing": {"model_type": "video_llava",
                                 "vision_config": {"model_type": "clip_vision_model", "hidden_size": 64}},
    "error_strategy": {"model_type": "video_llava", "vision_feature_select_strategy": "cls"},
}


def expected(cfg: VideoLlavaConfig) -> dict:
    v, t = cfg.vision_config, cfg.text_config
    rope = dict(t.rope_parameters)
    return {
        "vision_config": {k: getattr(v, k) for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
            "image_size", "patch_size", "hidden_act", "layer_norm_eps")},
        "text_config": {**{k: getattr(t, k) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
            "attention_bias", "mlp_bias", "tie_word_embeddings", "pad_token_id", "bos_token_id", "eos_token_id")},
            "rope": {k: rope[k] for k in sorted(rope) if k in (
                "rope_type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}},
        **{k: getattr(cfg, k) for k in (
            "image_token_index", "video_token_index", "projector_hidden_act", "vision_feature_select_strategy",
            "vision_feature_layer", "multimodal_projector_bias", "tie_word_embeddings")},
        "pad_token_id": getattr(cfg, "pad_token_id", None),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, raw in INPUTS.items():
        cfg = VideoLlavaConfig(**json.loads(json.dumps(raw)))
        doc = {"input": raw, "expected": expected(cfg)}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    for name, raw in ERROR_INPUTS.items():
        try:
            VideoLlavaConfig(**json.loads(json.dumps(raw)))
        except Exception as e:  # noqa: BLE001 - any rejection counts
            doc = {"input": raw, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
        else:
            raise RuntimeError(f"{name}: transformers accepted it")
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(INPUTS) + len(ERROR_INPUTS)} config fixtures to {OUT}")


if __name__ == "__main__":
    main()
