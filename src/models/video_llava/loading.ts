/**
 * fromPretrained: config.json + safetensors (single file or sharded) → a model with every parameter
 * filled. Tensors are read one at a time and handed to their parameter, so no second copy of the
 * model is ever held; large 16-bit weights stay as stored, mapped from the files (./weight_formats.ts).
 * Keys in either checkpoint layout are accepted (src/weights/key_map.ts). A model that cannot fit in memory
 * is refused before anything is read (./memory.ts).
 */
import { WeightsError } from '../../errors';
import { Parameter } from '../../layers/module';
import type { ResolveOptions } from '../../hub/types';
import { ModelSourceOptions, platform } from '../../platform';
import { ModelFiles } from '../../platform/files';
import { Checkpoint } from '../../weights/checkpoint';
import { dtypeSize } from '../../weights/dtype';
import { isIgnoredKey, toModulePath } from '../../weights/key_map';
import { loadVideoLlavaConfig } from './config';
import { WeightMemory, checkWeightsFit } from './memory';
import { VideoLlavaForConditionalGeneration } from './modeling';
import { FormatOptions, checkFormatOptions, readHalfWeight, storedFormat } from './weight_formats';
import { Quantization, QuantizationOptions, quantizedCompute, readQuantizedWeight, resolveQuantization, splitAuxKey } from './quantized';
import { BitsAndBytesConfig } from '../../quantization/config';
import { Json } from '../config_fields';

export interface LoadProgress {
  tensorsLoaded: number;
  tensorsTotal: number;
  bytesLoaded: number;
  bytesTotal: number;
}

/**
 * `dir` may be a local directory or a Hub model id ("LanguageBind/Video-LLaVA-7B-hf"): ids resolve through
 * the Hugging Face cache (shared with Python) and download what is missing; the ResolveOptions fields
 * (revision, token, cacheDir, endpoint, offline, onProgress for downloads) apply then. An http(s) URL (and in the
 * browser, a URL relative to the page) is read over HTTP by byte ranges, kept in Cache Storage in the browser
 * (`cache`).
 */
export interface LoadOptions extends Omit<ResolveOptions, 'onProgress' | 'allowPatterns'>, Pick<ModelSourceOptions, 'cache'>, FormatOptions {
  /** Download progress when `dir` is a Hub model id that is not fully cached. */
  onDownloadProgress?: ResolveOptions['onProgress'];
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * bitsandbytes quantization at load (like BitsAndBytesConfig in from_pretrained): `{ bits: 4, type: 'nf4',
   * doubleQuant: true }` or `{ bits: 8 }`. Checkpoints saved quantized (quantization_config in config.json) load as
   * saved without it.
   */
  quantization?: QuantizationOptions;
  /** Throw on checkpoint keys the model does not use (default false: they are reported through onUnexpectedKeys). */
  strict?: boolean;
  onUnexpectedKeys?: (keys: string[]) => void;
}

/** The config.json text each loaded model came from, unknown fields included (savePretrained writes it back). */
const RAW_CONFIGS = new WeakMap<VideoLlavaForConditionalGeneration, string>();
/** The bitsandbytes quantization a model was loaded with (savePretrained writes it as quantization_config). */
const QUANTIZATIONS = new WeakMap<VideoLlavaForConditionalGeneration, BitsAndBytesConfig>();

export function rawConfigOf(model: VideoLlavaForConditionalGeneration): string | undefined {
  return RAW_CONFIGS.get(model);
}

export function quantizationOf(model: VideoLlavaForConditionalGeneration): BitsAndBytesConfig | undefined {
  return QUANTIZATIONS.get(model);
}

export async function loadVideoLlava(idOrDir: string | ModelFiles, options: LoadOptions = {}): Promise<VideoLlavaForConditionalGeneration> {
  const { revision, cacheDir, token, endpoint, offline, fetch, lock, cache } = options;
  const formats = checkFormatOptions(options);
  const files =
    typeof idOrDir === 'string'
      ? await platform.modelFiles(idOrDir, { revision, cacheDir, token, endpoint, offline, fetch, lock, cache, onProgress: options.onDownloadProgress })
      : idOrDir;
  const dir = files.location;
  const config = await loadVideoLlavaConfig(files);
  const model = new VideoLlavaForConditionalGeneration(config);
  const rawConfig = files.text('config.json') ?? '';
  RAW_CONFIGS.set(model, rawConfig);
  const quantization = resolveQuantization(model, options.quantization, JSON.parse(rawConfig) as Json, `${dir}/config.json`);
  if (quantization) QUANTIZATIONS.set(model, quantization.config);
  const params = new Map<string, Parameter>(model.namedParameters());
  const checkpoint = await Checkpoint.open(files);
  try {
    const aux = auxKeys(checkpoint.keys(), quantization);
    const plan = planLoad(checkpoint.keys().filter((k) => !aux.keys.has(k)), params);
    const quantized = (path: string) => !!quantization && path.endsWith('.weight') && quantization.modules.has(path.slice(0, -'.weight'.length));
    const formatOf = (key: string, path: string) => (quantized(path) ? 'quantized' : storedFormat(params.get(path)!, checkpoint.info(key).dtype, formats));
    checkWeightsFit(weightMemory(plan, params, formatOf, quantization), dir);
    if (plan.unexpected.length > 0) {
      if (options.strict) throw new WeightsError(`checkpoint in ${dir} has ${plan.unexpected.length} keys the model does not use: ${preview(plan.unexpected)}`);
      options.onUnexpectedKeys?.(plan.unexpected);
    }
    const tiedHead = !plan.found.has('lm_head.weight') && (config.tie_word_embeddings || config.text_config.tie_word_embeddings);
    const missing = [...params.keys()].filter((p) => !plan.found.has(p) && !(tiedHead && p === 'lm_head.weight'));
    if (missing.length > 0) throw new WeightsError(`checkpoint in ${dir} lacks ${missing.length} weights the model needs: ${preview(missing)}`);


    const bytesTotal = plan.entries.reduce((s, [key]) => s + checkpoint.info(key).byteLength, 0);
    let bytesLoaded = 0;
    let tensorsLoaded = 0;
    for (const [key, path] of plan.entries) {
      const param = params.get(path)!;
      const format = formatOf(key, path);
      if (format === 'quantized') param.setStored(await readQuantizedWeight(checkpoint, key, quantization!, aux.byModule, quantizedCompute(quantization!, formats.computeDtype)), key);
      else if (format) param.setStored(await readHalfWeight(checkpoint, key, format, formats.computeDtype), key);
      else param.set(await checkpoint.readTensor(key), key);
      bytesLoaded += checkpoint.info(key).byteLength;
      options.onProgress?.({ tensorsLoaded: ++tensorsLoaded, tensorsTotal: plan.entries.length, bytesLoaded, bytesTotal });
    }
    if (tiedHead) {
      const embed = model.model.language_model.embed_tokens.weight;
      if (embed.stored) model.lm_head.weight.setStored(embed.stored.retain(), 'lm_head.weight (tied to embed_tokens)');
      else model.lm_head.weight.set(embed.value.clone(), 'lm_head.weight (tied to embed_tokens)');
    }
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await checkpoint.close();
  }
}

/** What the model will hold once loaded: float32 tensors in the heap, and weights kept as stored. */
function weightMemory(
  plan: LoadPlan,
  params: Map<string, Parameter>,
  formatOf: (key: string, path: string) => string | null,
  quantization: Quantization | null,
): WeightMemory {
  const keyOf = new Map(plan.entries.map(([key, path]) => [path, key]));
  const need: WeightMemory = { heapBytes: 0, storedBytes: 0 };
  for (const [path, param] of params) {
    const key = keyOf.get(path) ?? (path === 'lm_head.weight' ? keyOf.get('model.language_model.embed_tokens.weight') : undefined);
    const format = key === undefined ? null : formatOf(key, path);
    if (format === 'quantized') need.storedBytes += quantizedBytes(param.size, param.shape[0], quantization!);
    else if (format && keyOf.has(path)) need.storedBytes += param.size * 2;
    else if (!format) need.heapBytes += param.size * 4; // a tied head shares a stored table: nothing more
  }
  return need;
}

/** Bytes a quantized weight keeps: codes plus float32 scales (per block, or per row for 8-bit). */
function quantizedBytes(size: number, rows: number, q: Quantization): number {
  return q.config.load_in_8bit ? size + 4 * rows : Math.ceil(size / 2) + 4 * Math.ceil(size / q.blockSize);
}

/** The tensors a quantized checkpoint stores next to each `weight`, grouped by module; none without quantization. */
function auxKeys(keys: string[], quantization: Quantization | null): { keys: Set<string>; byModule: Map<string, string[]> } {
  const out = { keys: new Set<string>(), byModule: new Map<string, string[]>() };
  if (!quantization?.preQuantized) return out;
  for (const key of keys) {
    const split = splitAuxKey(key);
    if (!split) continue;
    out.keys.add(key);
    const list = out.byModule.get(split[0]) ?? [];
    list.push(split[1]);
    out.byModule.set(split[0], list);
  }
  return out;
}

interface LoadPlan {
  entries: Array<[string, string]>; // checkpoint key → module path
  found: Set<string>;
  unexpected: string[];
}

function planLoad(keys: string[], params: Map<string, Parameter>): LoadPlan {
  const plan: LoadPlan = { entries: [], found: new Set(), unexpected: [] };
  for (const key of keys) {
    const path = toModulePath(key);
    if (!params.has(path)) {
      if (!isIgnoredKey(key)) plan.unexpected.push(key);
      continue;
    }
    if (plan.found.has(path)) throw new WeightsError(`two checkpoint keys map to the same weight ${path} (one is ${key})`, key);
    plan.found.add(path);
    plan.entries.push([key, path]);
  }
  return plan;
}

function preview(keys: string[]): string {
  return keys.slice(0, 5).join(', ') + (keys.length > 5 ? `, … (${keys.length - 5} more)` : '');
}
