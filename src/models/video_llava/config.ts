import { ConfigError } from '../../errors';
import { platform } from '../../platform';
import { ModelFiles } from '../../platform/files';
import { FieldReader, Json } from '../config_fields';
import { CLIP_VISION_DEFAULTS, ClipVisionConfig, parseClipVisionConfig } from '../clip/config';
import { LlamaConfig, parseLlamaConfig } from '../llama/config';

/** VideoLlavaConfig (transformers 5.24): both towers share vision_config. */
export interface VideoLlavaConfig {
  vision_config: ClipVisionConfig;
  text_config: LlamaConfig;
  image_token_index: number; // 32000 (alias image_token_id)
  video_token_index: number; // 32001 (alias video_token_id)
  projector_hidden_act: string; // "gelu" = exact erf GELU
  vision_feature_select_strategy: 'default' | 'full'; // "default" drops CLS, for images only
  vision_feature_layer: number | number[]; // -2; a list concatenates those hidden states on the last dim
  multimodal_projector_bias: boolean; // true
  tie_word_embeddings: boolean; // false
  ignore_index: number; // -100
  pad_token_id: number | null;
  /**
   * LanguageBind's temporal attention in every video-tower layer (src/models/clip/temporal.ts), present in the
   * original checkpoints and dropped by the HF port: `{ num_frames }` = frames the temporal embedding covers.
   * Not a transformers field: null (absent) gives the HF architecture.
   */
  video_temporal_attention: { num_frames: number } | null;
}

/** The vision defaults VideoLlavaConfig uses when vision_config is absent: CLIP ViT-L/14 at 224 px. */
const VIDEO_LLAVA_VISION_DEFAULTS: ClipVisionConfig = {
  ...CLIP_VISION_DEFAULTS,
  intermediate_size: 4096,
  hidden_size: 1024,
  patch_size: 14,
  image_size: 224,
  num_hidden_layers: 24,
  num_attention_heads: 16,
};

export function parseVideoLlavaConfig(raw: Json, file?: string): VideoLlavaConfig {
  const f = new FieldReader(raw, '', file);
  const vision = f.object('vision_config');
  const text = f.object('text_config');
  const imageToken = f.has('image_token_index') ? f.int('image_token_index', 32000) : f.int('image_token_id', 32000);
  const videoToken = f.has('video_token_index') ? f.int('video_token_index', 32001) : f.int('video_token_id', 32001);
  const cfg: VideoLlavaConfig = {
    vision_config: vision
      ? parseClipVisionConfig(vision, CLIP_VISION_DEFAULTS, 'vision_config.', file)
      : VIDEO_LLAVA_VISION_DEFAULTS,
    text_config: parseLlamaConfig(text ?? {}, 'text_config.', file),
    image_token_index: imageToken,
    video_token_index: videoToken,
    projector_hidden_act: f.str('projector_hidden_act', 'gelu'),
    vision_feature_select_strategy: f.str('vision_feature_select_strategy', 'default', ['default', 'full'] as const),
    vision_feature_layer: f.intOrList('vision_feature_layer', -2) ?? -2,
    multimodal_projector_bias: f.bool('multimodal_projector_bias', true),
    tie_word_embeddings: f.bool('tie_word_embeddings', false),
    ignore_index: f.int('ignore_index', -100),
    pad_token_id: f.optInt('pad_token_id'),
    video_temporal_attention: parseTemporal(f.sub('video_temporal_attention')),
  };
  checkFeatureLayers(cfg, file);
  return cfg;
}

function parseTemporal(f: FieldReader | null): { num_frames: number } | null {
  if (!f) return null;
  const frames = f.int('num_frames', 8);
  if (frames < 1) throw new ConfigError('video_temporal_attention.num_frames', `expected a positive integer, found ${frames}`, f.file);
  return { num_frames: frames };
}

function checkFeatureLayers(cfg: VideoLlavaConfig, file?: string): void {
  const n = cfg.vision_config.num_hidden_layers;
  for (const layer of featureLayers(cfg)) {
    if (layer < -(n + 1) || layer > n) {
      throw new ConfigError('vision_feature_layer', `${layer} is outside the ${n + 1} hidden states of the vision tower`, file);
    }
  }
}

export function featureLayers(cfg: VideoLlavaConfig): number[] {
  return Array.isArray(cfg.vision_feature_layer) ? cfg.vision_feature_layer : [cfg.vision_feature_layer];
}

/** `<dir>/config.json`: a local directory, or any model folder (src/platform/files.ts). */
export async function loadVideoLlavaConfig(dir: string | ModelFiles): Promise<VideoLlavaConfig> {
  const files = typeof dir === 'string' ? platform.localFiles(dir) : dir;
  const file = files.where('config.json');
  let text: string | undefined;
  try {
    text = files.text('config.json');
    if (text === undefined) throw new Error('no such file');
  } catch (e) {
    throw new ConfigError('config.json', `cannot read ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('config.json', `invalid JSON: ${(e as Error).message}`, file);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('config.json', 'expected a JSON object', file);
  return parseVideoLlavaConfig(raw as Json, file);
}
