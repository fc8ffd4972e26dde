/**
 * Writing models and adapters in the layouts Python reads:
 *   savePretrained    config.json + model.safetensors (or shards + model.safetensors.index.json) with the
 *                     key names transformers 5.24 save_pretrained writes (`language_model.model.*`,
 *                     `language_model.lm_head.*`, `image_tower.*`, `multi_modal_projector.*`)
 *   saveLoraAdapter   adapter_config.json + adapter_model.safetensors as PEFT 0.21.2 writes them
 *   loadLoraAdapter   the reverse, for adapters PEFT saved
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, SafetensorsError, WeightsError } from '../errors';
import { Json } from '../models/config_fields';
import { VideoLlavaConfig } from '../models/video_llava/config';
import { quantizationOf, rawConfigOf } from '../models/video_llava/loading';
import { bitsAndBytesConfigToJson } from '../quantization/config';
import { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import { Module, Parameter } from '../layers/module';
import { INDEX_FILE, SINGLE_FILE } from '../weights/checkpoint';
import { DType } from '../weights/dtype';
import { toLegacyKey, toModulePath } from '../weights/key_map';
import { SafetensorsFile, TensorEntry, writeSafetensors } from '../weights/safetensors';
import { PyFloat, parseLossless, toPythonJson } from './json';
import { LoraConfig, attachLora, loraConfigOf, loraParameters, parseLoraConfig, unloadLora } from './lora';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/** PEFT's prefix of every adapter key: PeftModel.base_model (LoraModel) .model (the transformers model). */
export const PEFT_KEY_PREFIX = 'base_model.model.';
const SAFETENSORS_METADATA = { format: 'pt' };

export type SaveDType = 'float32' | 'float16' | 'bfloat16';
const SAFETENSORS_DTYPE: Record<SaveDType, DType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const BYTES: Record<SaveDType, number> = { float32: 4, float16: 2, bfloat16: 2 };

export interface SavePretrainedOptions {
  /**
   * Stored dtype; config.json's "dtype" is set to it. Default 'auto': the format the model's large weights are kept
   * in (a bfloat16 checkpoint loaded as stored saves back byte-identical), float32 when they are float32 tensors.
   */
  dtype?: SaveDType | 'auto';
  /**
   * Largest shard, in bytes or as "5GB" / "500MB" / "100KB" (powers of 10, as huggingface_hub parses them).
   * Default "50GB", transformers 5.24's. Half-precision shards are encoded in memory one at a time.
   */
  maxShardSize?: number | string;
}

export interface SaveResult {
  /** Files written, relative to the directory. */
  files: string[];
  /** Tensor name → file, as the index lists it (single file: every tensor → model.safetensors). */
  weightMap: Record<string, string>;
}

/** "5GB" → 5·10⁹, as huggingface_hub's parse_size_to_int. */
export function parseSize(size: number | string): number {
  if (typeof size === 'number') {
    if (!(size > 0)) throw new ConfigError('maxShardSize', `expected a positive byte count, found ${size}`);
    return Math.floor(size);
  }
  const units: Record<string, number> = { TB: 1e12, GB: 1e9, MB: 1e6, KB: 1e3 };
  const s = size.trim();
  const unit = s.slice(-2).toUpperCase();
  const value = Number(s.slice(0, -2).trim());
  if (!(unit in units) || !(value > 0)) throw new ConfigError('maxShardSize', `expected a size like "5GB", "500MB" or "100KB", found "${size}"`);
  return Math.floor(value * units[unit]);
}

/** huggingface_hub's split: tensors in order, a new shard when the next one would overflow, an oversize tensor alone. */
export function planShards(entries: Array<{ key: string; bytes: number }>, maxBytes: number): string[][] {
  const shards: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const { key, bytes } of entries) {
    if (bytes > maxBytes) {
      shards.push([key]);
      continue;
    }
    if (size + bytes > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(key);
    size += bytes;
  }
  if (current.length > 0) shards.push(current);
  return shards.filter((s) => s.length > 0);
}

function tiedHead(config: VideoLlavaConfig): boolean {
  return config.tie_word_embeddings || config.text_config.tie_word_embeddings;
}

/** The numbers of an object as Python floats (config fields that are floats in Python), except the named ints. */
function floats(o: object, ints: string[] = []): Json {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' && !ints.includes(k) ? new PyFloat(v) : v]));
}

/** config.json for a model built in code (no file to copy): the fields this implementation reads, HF names. */
function configJson(config: VideoLlavaConfig): Json {
  const { rope, rms_norm_eps, ...text } = config.text_config;
  const { layer_norm_eps, ...vision } = config.vision_config;
  const { rope_type, ...ropeFloats } = rope;
  return {
    architectures: ['VideoLlavaForConditionalGeneration'],
    model_type: 'video_llava',
    image_token_index: config.image_token_index,
    video_token_index: config.video_token_index,
    projector_hidden_act: config.projector_hidden_act,
    vision_feature_select_strategy: config.vision_feature_select_strategy,
    vision_feature_layer: config.vision_feature_layer,
    multimodal_projector_bias: config.multimodal_projector_bias,
    tie_word_embeddings: config.tie_word_embeddings,
    ignore_index: config.ignore_index,
    pad_token_id: config.pad_token_id,
    text_config: { model_type: 'llama', ...text, rms_norm_eps: new PyFloat(rms_norm_eps), rope_parameters: { rope_type, ...floats(ropeFloats, ['original_max_position_embeddings']) } },
    vision_config: { model_type: 'clip_vision_model', ...vision, layer_norm_eps: new PyFloat(layer_norm_eps) },
    ...(config.video_temporal_attention ? { video_temporal_attention: config.video_temporal_attention } : {}),
  };
}

async function removeStaleWeights(dir: string, keep: Set<string>): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const ours = name === SINGLE_FILE || name === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(name);
    if (ours && !keep.has(name)) await fsp.rm(path.join(dir, name), { force: true });
  }
}

/** Whether two parameters hold the same values (a tied head shares its stored table outright). */
function sameValues(a: Parameter, b: Parameter): boolean {
  if (a.stored || b.stored) {
    if (a.stored === b.stored) return true;
    return tf.tidy(() => tf.all(tf.equal(a.checkpointValue(), b.checkpointValue())).dataSync()[0] === 1);
  }
  return tf.tidy(() => tf.all(tf.equal(a.value, b.value)).dataSync()[0] === 1);
}

const HALF_FORMATS = new Set(['bfloat16', 'float16']);

/** 'auto' → the one format of the model's stored weights, else float32. */
function resolveSaveDType(model: Module, dtype: SaveDType | 'auto'): SaveDType {
  if (dtype !== 'auto') return dtype;
  const formats = new Set(model.namedParameters().flatMap(([, p]) => (p.stored && HALF_FORMATS.has(p.stored.format) ? [p.stored.format] : [])));
  const [only] = formats;
  return formats.size === 1 && (only === 'bfloat16' || only === 'float16') ? only : 'float32';
}

async function writeShard(file: string, params: Array<[string, Parameter]>, dtype: SaveDType): Promise<void> {
  // Values in checkpoint layout (Linear keeps Wᵀ in memory), read to the host one parameter at a time; a weight
  // kept in the target format is written as its own bytes.
  const entries: TensorEntry[] = params.flatMap(([key, p]): TensorEntry[] => {
    // A weight kept in the target format, or quantized (saved as bitsandbytes saves it), is written as its own tensors.
    if (p.stored && (p.stored.format === dtype || !HALF_FORMATS.has(p.stored.format))) {
      const module = key.slice(0, key.length - 'weight'.length);
      return p.stored.storedTensors().map((t) => ({ name: module + t.name, dtype: t.dtype, shape: t.shape, data: t.data }));
    }
    const t = p.checkpointValue();
    const data = t.dataSync() as Float32Array;
    t.dispose();
    return [{ name: key, dtype: dtype === 'float32' ? 'F32' : SAFETENSORS_DTYPE[dtype], shape: [...p.shape], data }];
  });
  await writeSafetensors(file, entries, SAFETENSORS_METADATA);
}

/**
 * save_pretrained: config.json (the file the model was loaded from, unknown fields kept, "dtype" updated)
 * and the weights under the legacy key names transformers 5.24 writes, sharded above maxShardSize.
 * A tied lm_head is not written (transformers drops tied weights). Refuses a model with an unmerged
 * LoRA adapter: merge it (mergeLora) or save the adapter alone (saveLoraAdapter).
 */
export async function savePretrained(model: VideoLlavaForConditionalGeneration, dir: string, options: SavePretrainedOptions = {}): Promise<SaveResult> {
  if (loraConfigOf(model)) {
    throw new WeightsError('the model has an unmerged LoRA adapter: call mergeLora(model) first, or saveLoraAdapter(model, dir) to save the adapter alone');
  }
  const asked = options.dtype ?? 'auto';
  if (asked !== 'auto' && !(asked in SAFETENSORS_DTYPE)) throw new ConfigError('dtype', `expected auto, float32, float16 or bfloat16, found ${JSON.stringify(asked)}`);
  const dtype = resolveSaveDType(model, asked);
  const maxBytes = parseSize(options.maxShardSize ?? '50GB');
  const tied = tiedHead(model.config);
  if (tied && !sameValues(model.lm_head.weight, model.model.language_model.embed_tokens.weight)) {
    throw new WeightsError('tie_word_embeddings is set but lm_head.weight differs from embed_tokens.weight (trained apart): set tie_word_embeddings to false in the config to save both');
  }
  const params = model.namedParameters().filter(([p]) => !(tied && p === 'lm_head.weight'));
  for (const [name, p] of params) if (!p.loaded) throw new WeightsError(`${name} is not loaded; nothing to save`, name);
  const keyed: Array<[string, Parameter]> = params.map(([name, p]) => [toLegacyKey(name), p]);
  const byKey = new Map(keyed);
  const shards = planShards(keyed.map(([key, p]) => ({ key, bytes: p.size * BYTES[dtype] })), maxBytes);
  const names = shards.length === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);

  await fsp.mkdir(dir, { recursive: true });
  await removeStaleWeights(dir, new Set(names));
  const weightMap: Record<string, string> = {};
  for (const [i, keys] of shards.entries()) {
    await writeShard(path.join(dir, names[i]), keys.map((k) => [k, byKey.get(k)!]), dtype);
    for (const k of keys) weightMap[k] = names[i];
  }
  const files = [...names];
  if (shards.length > 1) {
    const totalSize = keyed.reduce((s, [, p]) => s + p.size * BYTES[dtype], 0);
    const totalParameters = keyed.reduce((s, [, p]) => s + p.size, 0);
    const index = { metadata: { total_parameters: totalParameters, total_size: totalSize }, weight_map: weightMap };
    await fsp.writeFile(path.join(dir, INDEX_FILE), toPythonJson(index) + '\n');
    files.push(INDEX_FILE);
  }
  const raw = rawConfigOf(model);
  const config = (raw === undefined ? configJson(model.config) : parseLossless(raw)) as Json; // literals kept: 1.0 stays a float
  config.dtype = dtype;
  if ('torch_dtype' in config) config.torch_dtype = dtype;
  const quantization = quantizationOf(model);
  if (quantization && !('quantization_config' in config)) config.quantization_config = bitsAndBytesConfigToJson(quantization);
  await fsp.writeFile(path.join(dir, 'config.json'), toPythonJson(config) + '\n');
  files.push('config.json');
  return { files, weightMap };
}

// ---------------------------------------------------------------------------------------------------
// PEFT adapters

/** save_pretrained of a PeftModel: adapter_config.json and the adapter weights under `base_model.model.<path>`. */
export async function saveLoraAdapter(model: Module, dir: string): Promise<void> {
  const config = loraConfigOf(model);
  if (!config) throw new WeightsError('the model has no LoRA adapter to save (addLora or loadLoraAdapter first)');
  const tensors: Record<string, tf.Tensor> = {};
  for (const [name, p] of loraParameters(model)) tensors[PEFT_KEY_PREFIX + name] = p.checkpointValue();
  await fsp.mkdir(dir, { recursive: true });
  try {
    await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, SAFETENSORS_METADATA);
  } finally {
    tf.dispose(Object.values(tensors));
  }
  const json = (config.text === undefined ? { ...config.raw, lora_dropout: new PyFloat(config.lora_dropout) } : parseLossless(config.text, ADAPTER_CONFIG_FILE)) as Json;
  json.inference_mode = true; // as PeftModel.save_pretrained writes it
  await fsp.writeFile(path.join(dir, ADAPTER_CONFIG_FILE), toPythonJson(json));
}

async function readAdapterConfig(dir: string): Promise<LoraConfig> {
  const file = path.join(dir, ADAPTER_CONFIG_FILE);
  let text: string;
  let raw: unknown;
  try {
    text = await fsp.readFile(file, 'utf8');
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(ADAPTER_CONFIG_FILE, `cannot read ${file}: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(ADAPTER_CONFIG_FILE, 'expected a JSON object', file);
  return { ...parseLoraConfig(raw as Json, file), text };
}

/** An adapter key → module path: PEFT's prefix removed, legacy (transformers 4) names mapped to current ones. */
function adapterKeyToPath(key: string, file: string): string {
  if (!key.startsWith(PEFT_KEY_PREFIX)) throw new SafetensorsError(file, `adapter keys start with "${PEFT_KEY_PREFIX}"`, key);
  return toModulePath(key.slice(PEFT_KEY_PREFIX.length));
}

export interface LoadAdapterOptions {
  /** Leave the adapter weights trainable (PeftModel.from_pretrained(is_trainable=True)); default false. */
  trainable?: boolean;
}

/**
 * PeftModel.from_pretrained: attaches the LoRA adapter saved in `dir` (adapter_config.json +
 * adapter_model.safetensors) to `model` and freezes the base weights. Every adapter weight the config
 * implies must be in the file and nothing else; on any error the model is left as it was.
 */
export async function loadLoraAdapter(model: Module, dir: string, options: LoadAdapterOptions = {}): Promise<LoraConfig> {
  const config = await readAdapterConfig(dir);
  const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const weights = await SafetensorsFile.open(file);
  const flags = model.namedParameters().map(([, p]) => [p, p.trainable] as const);
  try {
    attachLora(model, config);
    try {
      const expected = new Map(loraParameters(model));
      const plan = new Map<string, string>(); // path → key
      const unexpected: string[] = [];
      for (const key of weights.keys()) {
        const p = adapterKeyToPath(key, file);
        if (!expected.has(p)) unexpected.push(key);
        else plan.set(p, key);
      }
      const missing = [...expected.keys()].filter((p) => !plan.has(p));
      if (missing.length > 0 || unexpected.length > 0) {
        throw new WeightsError(
          `${file} does not fit the adapter its config describes: ` +
            (missing.length ? `missing ${missing.length} (e.g. ${PEFT_KEY_PREFIX}${missing[0]})` : '') +
            (missing.length && unexpected.length ? '; ' : '') +
            (unexpected.length ? `unexpected ${unexpected.length} (e.g. ${unexpected[0]})` : ''),
          undefined,
          file,
        );
      }
      for (const [p, key] of plan) {
        const param = expected.get(p)!;
        param.set(await weights.readTensor(key), key);
        param.trainable = options.trainable ?? false;
      }
    } catch (e) {
      unloadLora(model);
      for (const [p, flag] of flags) p.trainable = flag;
      throw e;
    }
    return config;
  } finally {
    await weights.close();
  }
}
