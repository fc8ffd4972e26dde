/**
 * fromPretrained: config.json + safetensors (single file or sharded) → a model with every parameter
 * filled. Tensors are read one at a time and handed to their parameter, so no second copy of the
 * model is ever held. Keys in either checkpoint layout are accepted (src/weights/key_map.ts).
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../../errors';
import { Parameter } from '../../layers/module';
import { ResolveOptions, resolveModel } from '../../hub';
import { Checkpoint } from '../../weights/checkpoint';
import { isIgnoredKey, toModulePath } from '../../weights/key_map';
import { loadVideoLlavaConfig } from './config';
import { VideoLlavaForConditionalGeneration } from './modeling';

export interface LoadProgress {
  tensorsLoaded: number;
  tensorsTotal: number;
  bytesLoaded: number;
  bytesTotal: number;
}

/**
 * `dir` may be a local directory or a Hub model id ("LanguageBind/Video-LLaVA-7B-hf"): ids resolve through
 * the Hugging Face cache (shared with Python) and download what is missing; the ResolveOptions fields
 * (revision, token, cacheDir, endpoint, offline, onProgress for downloads) apply then.
 */
export interface LoadOptions extends Omit<ResolveOptions, 'onProgress' | 'allowPatterns'> {
  /** Download progress when `dir` is a Hub model id that is not fully cached. */
  onDownloadProgress?: ResolveOptions['onProgress'];
  /** Called after each tensor is loaded. */
  onProgress?: (progress: LoadProgress) => void;
  /** Throw on checkpoint keys the model does not use (default false: they are reported through onUnexpectedKeys). */
  strict?: boolean;
  onUnexpectedKeys?: (keys: string[]) => void;
}

/** The config.json text each loaded model came from, unknown fields included (savePretrained writes it back). */
const RAW_CONFIGS = new WeakMap<VideoLlavaForConditionalGeneration, string>();

export function rawConfigOf(model: VideoLlavaForConditionalGeneration): string | undefined {
  return RAW_CONFIGS.get(model);
}

export async function loadVideoLlava(idOrDir: string, options: LoadOptions = {}): Promise<VideoLlavaForConditionalGeneration> {
  const { revision, cacheDir, token, endpoint, offline, fetch, lock } = options;
  const dir = await resolveModel(idOrDir, { revision, cacheDir, token, endpoint, offline, fetch, lock, onProgress: options.onDownloadProgress });
  const config = await loadVideoLlavaConfig(dir);
  const model = new VideoLlavaForConditionalGeneration(config);
  RAW_CONFIGS.set(model, await fsp.readFile(path.join(dir, 'config.json'), 'utf8'));
  const params = new Map<string, Parameter>(model.namedParameters());
  checkHeapFits(params, dir);
  const checkpoint = await Checkpoint.open(dir);
  try {
    const plan = planLoad(checkpoint.keys(), params);
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
      const tensor = await checkpoint.readTensor(key);
      params.get(path)!.set(tensor, key);
      bytesLoaded += checkpoint.info(key).byteLength;
      options.onProgress?.({ tensorsLoaded: ++tensorsLoaded, tensorsTotal: plan.entries.length, bytesLoaded, bytesTotal });
    }
    if (tiedHead) {
      const embed = model.model.language_model.embed_tokens.weight.value;
      model.lm_head.weight.set(embed.clone(), 'lm_head.weight (tied to embed_tokens)');
    }
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await checkpoint.close();
  }
}

/**
 * The wasm backend keeps every tensor in one WebAssembly memory of at most 4 GiB, and tfjs-backend-wasm
 * does not report a failed allocation: the tensor silently lands at address 0 over other data (measured
 * in benchmarks/RESULTS.md). Refuse up front when the float32 weights alone leave too little room.
 */
export const WASM_WEIGHT_LIMIT_BYTES = 3.5 * 1024 ** 3;

function checkHeapFits(params: Map<string, Parameter>, dir: string): void {
  if (tf.getBackend() !== 'wasm') return;
  let bytes = 0;
  for (const p of params.values()) bytes += p.size * 4;
  if (bytes > WASM_WEIGHT_LIMIT_BYTES) {
    const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
    throw new WeightsError(
      `${dir}: the model needs ${gib(bytes)} GiB of float32 weights but the wasm backend's memory is capped at 4 GiB ` +
        `(${gib(WASM_WEIGHT_LIMIT_BYTES)} GiB for weights); use --backend cpu (or tensorflow with @tensorflow/tfjs-node)`,
    );
  }
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
