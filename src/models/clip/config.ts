import { FieldReader, Json } from '../config_fields';
import { ConfigError } from '../../errors';

/** CLIP vision tower settings; defaults are CLIPVisionConfig's (transformers 5.24). */
export interface ClipVisionConfig {
  hidden_size: number; // 768
  intermediate_size: number; // 3072
  num_hidden_layers: number; // 12
  num_attention_heads: number; // 12
  num_channels: number; // 3
  image_size: number; // 224; square only
  patch_size: number; // 32
  hidden_act: string; // "quick_gelu"
  layer_norm_eps: number; // 1e-5
}

export const CLIP_VISION_DEFAULTS: ClipVisionConfig = {
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
};

export function parseClipVisionConfig(raw: Json, defaults = CLIP_VISION_DEFAULTS, prefix = 'vision_config.', file?: string): ClipVisionConfig {
  const f = new FieldReader(raw, prefix, file);
  const cfg: ClipVisionConfig = {
    hidden_size: f.int('hidden_size', defaults.hidden_size),
    intermediate_size: f.int('intermediate_size', defaults.intermediate_size),
    num_hidden_layers: f.int('num_hidden_layers', defaults.num_hidden_layers),
    num_attention_heads: f.int('num_attention_heads', defaults.num_attention_heads),
    num_channels: f.int('num_channels', defaults.num_channels),
    image_size: f.int('image_size', defaults.image_size),
    patch_size: f.int('patch_size', defaults.patch_size),
    hidden_act: f.str('hidden_act', defaults.hidden_act),
    layer_norm_eps: f.num('layer_norm_eps', defaults.layer_norm_eps),
  };
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new ConfigError(`${prefix}num_attention_heads`, `hidden_size ${cfg.hidden_size} is not divisible by ${cfg.num_attention_heads} heads`, file);
  }
  if (cfg.image_size < cfg.patch_size) {
    throw new ConfigError(`${prefix}patch_size`, `patch_size ${cfg.patch_size} is larger than image_size ${cfg.image_size}`, file);
  }
  return cfg;
}

/** Patches per side and positions (patches + CLS). */
export function clipGrid(cfg: ClipVisionConfig): { side: number; patches: number; positions: number } {
  const side = Math.floor(cfg.image_size / cfg.patch_size);
  return { side, patches: side * side, positions: side * side + 1 };
}
