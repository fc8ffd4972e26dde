/**
 * The original checkpoints' configs (PKU-YuanGroup/Video-LLaVA's `LlavaConfig` and the LanguageBind tower repos'
 * `LanguageBindVideoConfig` / `LanguageBindImageConfig`) translated into one VideoLlavaConfig:
 *
 *   text_config              the Llama fields at the top of the Video-LLaVA config.json (vocab 32000 for the real one)
 *   vision_config            the towers' `vision_config` (values of `vision_config_dict` win, as LanguageBind's
 *                            config class does); both towers must agree, since this package shares one vision config
 *   video_temporal_attention the video tower's add_time_attn / num_frames
 *   image/video_token_index  vocab_size and vocab_size + 1: the original vocabulary has no placeholder rows (it
 *                            marks media with -200, see expandOriginalIds), so placeholders are ids past its end
 *   vision_feature_layer     mm_vision_select_layer; mm_vision_select_feature "patch" = strategy "default" (images
 *                            lose CLS, frames keep it), "cls_patch" = "full"
 *   projector                mm_projector_type "mlp2x_gelu" = linear_1, exact GELU, linear_2, with biases
 */
import { ConfigError } from '../../errors';
import { FieldReader, Json } from '../config_fields';
import { ClipVisionConfig, parseClipVisionConfig } from '../clip/config';
import { parseLlamaConfig } from '../llama/config';
import { VideoLlavaConfig } from './config';

/** Whether a config.json is the original Video-LLaVA's (LlavaLlamaForCausalLM with mm_* fields). */
export function isOriginalConfig(raw: Json): boolean {
  return raw.model_type === 'llava' || typeof raw.mm_video_tower === 'string' || typeof raw.mm_image_tower === 'string';
}

/** A LanguageBind tower config's vision settings (vision_config, overridden by vision_config_dict). */
export function towerVisionJson(raw: Json, file?: string): Json {
  const f = new FieldReader(raw, '', file);
  const merged = { ...(f.object('vision_config') ?? {}), ...(f.object('vision_config_dict') ?? {}) };
  if (Object.keys(merged).length === 0) throw new ConfigError('vision_config', 'absent: not a LanguageBind tower config', file);
  return merged;
}

/** The tower's CLIP settings and its temporal frames (0 without add_time_attn). */
export function parseTowerConfig(raw: Json, file?: string): { vision: ClipVisionConfig; temporalFrames: number; loraRank: number } {
  const vision = towerVisionJson(raw, file);
  const f = new FieldReader(vision, 'vision_config.', file);
  // LanguageBind's CLIPVisionConfig defaults: add_time_attn false, num_frames 1, lora_r 2.
  const temporal = f.bool('add_time_attn', false);
  const frames = f.int('num_frames', 1);
  if (temporal && frames < 1) throw new ConfigError('vision_config.num_frames', `expected a positive integer, found ${frames}`, file);
  return { vision: parseClipVisionConfig(vision, undefined, 'vision_config.', file), temporalFrames: temporal ? frames : 0, loraRank: f.int('lora_r', 2) };
}

const SHARED_FIELDS: Array<keyof ClipVisionConfig> = [
  'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_channels', 'image_size', 'patch_size', 'hidden_act', 'layer_norm_eps',
];

export interface OriginalConfigFiles {
  model: string;
  videoTower: string;
  imageTower: string;
}

export function originalConfig(llava: Json, videoTower: Json, imageTower: Json, files: OriginalConfigFiles): VideoLlavaConfig {
  const f = new FieldReader(llava, '', files.model);
  const text = parseLlamaConfig(llava, '', files.model);
  const video = parseTowerConfig(videoTower, files.videoTower);
  const image = parseTowerConfig(imageTower, files.imageTower);
  if (image.temporalFrames > 0) throw new ConfigError('vision_config.add_time_attn', 'the image tower has temporal attention; expected LanguageBind_Image', files.imageTower);
  for (const key of SHARED_FIELDS) {
    if (video.vision[key] !== image.vision[key]) {
      throw new ConfigError(`vision_config.${key}`, `the towers differ (video ${video.vision[key]}, image ${image.vision[key]}); this package shares one vision config`, files.imageTower);
    }
  }
  const projector: string = f.str('mm_projector_type', 'linear');
  if (projector !== 'mlp2x_gelu') throw new ConfigError('mm_projector_type', `"${projector}" is not supported (Video-LLaVA uses "mlp2x_gelu")`, files.model);
  if (f.bool('mm_use_im_start_end', false)) throw new ConfigError('mm_use_im_start_end', 'true is not supported (Video-LLaVA-7B uses false)', files.model);
  const hidden = f.int('mm_hidden_size', video.vision.hidden_size);
  if (hidden !== video.vision.hidden_size) throw new ConfigError('mm_hidden_size', `${hidden}, but the towers are ${video.vision.hidden_size} wide`, files.model);
  const select = f.str('mm_vision_select_feature', 'patch', ['patch', 'cls_patch'] as const);
  return {
    vision_config: video.vision,
    text_config: text,
    image_token_index: text.vocab_size,
    video_token_index: text.vocab_size + 1,
    projector_hidden_act: 'gelu',
    vision_feature_select_strategy: select === 'patch' ? 'default' : 'full',
    vision_feature_layer: f.int('mm_vision_select_layer', -2),
    multimodal_projector_bias: true,
    tie_word_embeddings: text.tie_word_embeddings,
    ignore_index: -100,
    pad_token_id: text.pad_token_id,
    video_temporal_attention: video.temporalFrames > 0 ? { num_frames: video.temporalFrames } : null,
  };
}
