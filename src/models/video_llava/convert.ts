/**
 * Conversion between the original layout (PKU-YuanGroup/Video-LLaVA checkpoint + LanguageBind tower repositories)
 * and this package's Hugging Face layout (`video-llava convert`).
 *
 * original → hf: the model as builder.py assembles it, saved by savePretrained (transformers' key names) with
 *   `video_temporal_attention` in config.json and the temporal weights under the video tower
 *   (`video_tower.encoder.layers.N.temporal_attn.*`), so fromPretrained of the folder runs the temporal tower.
 *   Unlike convert_video_llava_weights_to_hf.py, nothing is dropped and the vocabulary is not resized: <image> and
 *   <video> are ids vocab_size and vocab_size + 1, added to the tokenizer, with no embedding rows (the placeholder
 *   rows are replaced by features before the decoder sees them). Deleting video_temporal_attention from the
 *   config gives the HF port's architecture on the same folder (the temporal keys are then reported unused).
 * hf → original: Video-LLaVA/ (LlavaLlamaForCausalLM config.json + model.safetensors with the original keys and
 *   the tower copies) next to LanguageBind_Video_merge/ and LanguageBind_Image/ (LanguageBind config.json with
 *   only the vision half + model.safetensors of `vision_model.*`), the layout loadOriginalVideoLlava reads.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { ConfigError } from '../../errors';
import { SaveDType, savePretrained } from '../../training/save';
import { PyFloat, toPythonJson } from '../../training/json';
import { encodeBFloat16, encodeFloat16 } from '../../weights/dtype';
import { toOriginalKey } from '../../weights/key_map';
import { TensorEntry, writeSafetensors } from '../../weights/safetensors';
import { Json } from '../config_fields';
import { VideoLlavaConfig, featureLayers } from './config';
import { VideoLlavaForConditionalGeneration } from './modeling';
import { OriginalLoadOptions, loadOriginalVideoLlava, originalCheckpointDir, readJsonFile } from './original';

export interface ConvertOptions extends OriginalLoadOptions {
  /** Target layout; default: the other one. */
  to?: 'hf' | 'original';
  /** Stored dtype (default float32). */
  dtype?: SaveDType;
}

export interface ConvertResult {
  to: 'hf' | 'original';
  /** Directories written (hf: one; original: model and the two towers). */
  dirs: string[];
  /** Things the user should know (e.g. no tokenizer.json to copy). */
  notes: string[];
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'generation_config.json', 'chat_template.jinja'];
const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

export async function convertCheckpoint(src: string, out: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const original = await originalCheckpointDir(src, options);
  const to = options.to ?? (original ? 'hf' : 'original');
  if (to === 'hf' && !original) throw new ConfigError('config.json', `${src} is not in the original layout (no mm_video_tower); nothing to convert to hf`);
  if (to === 'original' && original) throw new ConfigError('config.json', `${src} is already in the original layout`);
  if (to === 'hf') {
    const model = await loadOriginalVideoLlava(original!, options);
    try {
      await savePretrained(model, out, { dtype: options.dtype });
      const notes = await writeHfProcessorFiles(original!, out, model.config);
      return { to, dirs: [out], notes };
    } finally {
      model.dispose();
    }
  }
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(src, options);
  try {
    return { to, dirs: await saveOriginal(model, src, out, options.dtype ?? 'float32'), notes: [] };
  } finally {
    model.dispose();
  }
}

/** Tokenizer files with <image>/<video> added at their config ids, and processor settings of the original model. */
async function writeHfProcessorFiles(src: string, out: string, config: VideoLlavaConfig): Promise<string[]> {
  const notes: string[] = [];
  for (const f of TOKENIZER_FILES) {
    await fsp.copyFile(path.join(src, f), path.join(out, f)).catch(() => undefined);
  }
  const tokenizerFile = path.join(out, 'tokenizer.json');
  if ((await fsp.stat(tokenizerFile).catch(() => null))?.isFile()) {
    const tokenizer = await readJsonFile(tokenizerFile);
    const added = (tokenizer.added_tokens as Json[] | undefined) ?? [];
    for (const [content, id] of [['<image>', config.image_token_index], ['<video>', config.video_token_index]] as const) {
      if (added.some((t) => t.content === content)) continue;
      added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    }
    tokenizer.added_tokens = added;
    await fsp.writeFile(tokenizerFile, JSON.stringify(tokenizer, null, 2) + '\n');
    const configFile = path.join(out, 'tokenizer_config.json');
    const tokConfig = (await fsp.stat(configFile).catch(() => null)) ? await readJsonFile(configFile) : {};
    delete tokConfig.added_tokens_decoder; // rebuilt from tokenizer.json, which now holds the placeholders
    Object.assign(tokConfig, { image_token: '<image>', video_token: '<video>' });
    await fsp.writeFile(configFile, JSON.stringify(tokConfig, null, 2) + '\n');
  } else {
    notes.push(`${src} has no tokenizer.json (this package reads tokenizer.json only): copy the one of LanguageBind/Video-LLaVA-7B-hf or lmsys/vicuna-7b-v1.5 into ${out}`);
  }
  const v = config.vision_config;
  const processor = {
    patch_size: v.patch_size,
    vision_feature_select_strategy: config.vision_feature_select_strategy,
    num_additional_image_tokens: 1,
    image_token: '<image>',
    video_token: '<video>',
    video_preprocessing: 'languagebind', // the original video pipeline (this package's field)
  };
  await fsp.writeFile(path.join(out, 'processor_config.json'), JSON.stringify(processor, null, 2) + '\n');
  const pixels = {
    do_resize: true, size: { shortest_edge: v.image_size }, do_center_crop: true, crop_size: { height: v.image_size, width: v.image_size },
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: OPENAI_CLIP_MEAN, image_std: OPENAI_CLIP_STD, do_convert_rgb: true, resample: 3,
  };
  await fsp.writeFile(path.join(out, 'preprocessor_config.json'), JSON.stringify(pixels, null, 2) + '\n');
  return notes;
}

function entries(model: VideoLlavaForConditionalGeneration, select: (path: string) => string | null, dtype: SaveDType): TensorEntry[] {
  const list: TensorEntry[] = [];
  for (const [p, param] of model.namedParameters()) {
    const key = select(p);
    if (key === null) continue;
    const t = param.checkpointValue();
    const values = t.dataSync() as Float32Array;
    t.dispose();
    const data = dtype === 'float16' ? encodeFloat16(values) : dtype === 'bfloat16' ? encodeBFloat16(values) : values;
    list.push({ name: key, dtype: dtype === 'float32' ? 'F32' : dtype === 'float16' ? 'F16' : 'BF16', shape: [...param.shape], data });
  }
  return list;
}

function py(n: number): PyFloat {
  return new PyFloat(n);
}

async function saveOriginal(model: VideoLlavaForConditionalGeneration, src: string, out: string, dtype: SaveDType): Promise<string[]> {
  const c = model.config;
  const layers = featureLayers(c);
  if (layers.length !== 1) throw new ConfigError('vision_feature_layer', 'a list of layers has no original equivalent (mm_vision_select_layer is one layer)');
  if (c.projector_hidden_act !== 'gelu' || !c.multimodal_projector_bias) throw new ConfigError('projector_hidden_act', 'the original mlp2x_gelu projector is exact GELU with biases');
  const t = c.text_config;
  const v = c.vision_config;
  const dirs = { model: path.join(out, 'Video-LLaVA'), video: path.join(out, 'LanguageBind_Video_merge'), image: path.join(out, 'LanguageBind_Image') };
  for (const d of Object.values(dirs)) await fsp.mkdir(d, { recursive: true });

  const llava: Json = {
    architectures: ['LlavaLlamaForCausalLM'], model_type: 'llava',
    vocab_size: t.vocab_size, hidden_size: t.hidden_size, intermediate_size: t.intermediate_size, num_hidden_layers: t.num_hidden_layers,
    num_attention_heads: t.num_attention_heads, num_key_value_heads: t.num_key_value_heads, hidden_act: t.hidden_act,
    max_position_embeddings: t.max_position_embeddings, rms_norm_eps: py(t.rms_norm_eps), rope_theta: py(t.rope.rope_theta),
    rope_scaling: t.rope.rope_type === 'default' ? null : { type: t.rope.rope_type, factor: py(t.rope.factor ?? 1) },
    tie_word_embeddings: t.tie_word_embeddings, bos_token_id: t.bos_token_id, eos_token_id: t.eos_token_id, pad_token_id: c.pad_token_id,
    mm_image_tower: 'LanguageBind/LanguageBind_Image', mm_video_tower: 'LanguageBind/LanguageBind_Video_merge',
    mm_projector_type: 'mlp2x_gelu', mm_hidden_size: v.hidden_size, mm_vision_select_layer: layers[0],
    mm_vision_select_feature: c.vision_feature_select_strategy === 'default' ? 'patch' : 'cls_patch',
    mm_use_im_patch_token: false, mm_use_im_start_end: false, use_mm_proj: true, torch_dtype: dtype,
  };
  await fsp.writeFile(path.join(dirs.model, 'config.json'), toPythonJson(llava) + '\n');
  await writeSafetensors(path.join(dirs.model, 'model.safetensors'), entries(model, (p) => toOriginalKey(p), dtype), { format: 'pt' });
  for (const f of TOKENIZER_FILES) await fsp.copyFile(path.join(src, f), path.join(dirs.model, f)).catch(() => undefined);

  for (const kind of ['video', 'image'] as const) {
    const frames = kind === 'video' ? c.video_temporal_attention?.num_frames ?? 0 : 0;
    const vision: Json = {
      model_type: 'clip_vision_model', hidden_size: v.hidden_size, intermediate_size: v.intermediate_size, num_hidden_layers: v.num_hidden_layers,
      num_attention_heads: v.num_attention_heads, num_channels: v.num_channels, image_size: v.image_size, patch_size: v.patch_size,
      hidden_act: v.hidden_act, layer_norm_eps: py(v.layer_norm_eps), add_time_attn: frames > 0, num_frames: Math.max(frames, 1), lora_r: 0,
      video_decode_backend: 'decord',
    };
    const cls = kind === 'video' ? 'LanguageBindVideo' : 'LanguageBindImage';
    await fsp.writeFile(path.join(dirs[kind], 'config.json'), toPythonJson({ architectures: [cls], model_type: cls, vision_config: vision, text_config: {} }) + '\n');
    const prefix = `model.${kind}_tower.`;
    const weights = entries(model, (p) => (p.startsWith(prefix) ? `vision_model.${p.slice(prefix.length)}` : null), dtype);
    await writeSafetensors(path.join(dirs[kind], 'model.safetensors'), weights, { format: 'pt' });
  }
  return [dirs.model, dirs.video, dirs.image];
}
