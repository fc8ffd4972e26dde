/**
 * The original checkpoints, loaded as the original `builder.py` combines them:
 *   - the Video-LLaVA checkpoint (LanguageBind/Video-LLaVA-7B: `LlavaLlamaForCausalLM`, pytorch_model*.bin, a
 *     32000-row vocabulary) gives the Llama decoder, lm_head and `mm_projector`;
 *   - each tower comes from its own repository (config `mm_video_tower` = LanguageBind/LanguageBind_Video_merge,
 *     `mm_image_tower` = LanguageBind/LanguageBind_Image: Hub ids resolved through the cache, or directories),
 *     as `tower.load_model()` does; `towerWeights: 'embedded'` takes the copies the Video-LLaVA checkpoint carries
 *     instead (the tower configs are still read from the tower repositories).
 * The video tower keeps LanguageBind's temporal attention (video_temporal_attention). Key renames: the original
 * table of src/weights/key_map.ts. A tower repository can also be loaded alone (loadLanguageBindTower).
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError, WeightsError } from '../../errors';
import { ResolveOptions, resolveModel } from '../../hub';
import { Parameter } from '../../layers/module';
import { Checkpoint, INDEX_FILE, SINGLE_FILE } from '../../weights/checkpoint';
import { isIgnoredKey, originalToModulePath, towerToModulePath } from '../../weights/key_map';
import { TorchCheckpoint } from '../../weights/torch_checkpoint';
import type { DType } from '../../weights/dtype';
import { Json } from '../config_fields';
import { ClipVisionModel } from '../clip/modeling';
import { VideoLlavaConfig } from './config';
import { checkWeightsFit } from './memory';
import { checkFormatOptions, halfWeightFromBytes, storedFormat } from './weight_formats';
import type { LoadOptions } from './loading';
import { VideoLlavaForConditionalGeneration } from './modeling';
import { isOriginalConfig, originalConfig, parseTowerConfig } from './original_config';

/** The files of an original checkpoint repository that loading needs (an allowPatterns value). */
export const ORIGINAL_FILES = [
  'config.json', 'generation_config.json', 'pytorch_model*.bin', 'pytorch_model.bin.index.json', 'model*.safetensors', 'model.safetensors.index.json',
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
];
const TOWER_FILES = ['config.json', 'pytorch_model*.bin', 'pytorch_model.bin.index.json', 'model*.safetensors', 'model.safetensors.index.json'];

export interface OriginalLoadOptions extends LoadOptions {
  /** The LanguageBind video tower: a directory or Hub id (default: the config's mm_video_tower). */
  videoTower?: string;
  /** The LanguageBind image tower (default: the config's mm_image_tower). */
  imageTower?: string;
  /** 'repos' (default, as builder.py): tower weights from the tower repositories; 'embedded': the copies in the checkpoint. */
  towerWeights?: 'repos' | 'embedded';
}

export async function readJsonFile(file: string): Promise<Json> {
  let raw: unknown;
  try {
    raw = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(path.basename(file), `cannot read ${file}: ${(e as Error).message}`, file);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(path.basename(file), 'expected a JSON object', file);
  return raw as Json;
}

function resolveOptions(options: LoadOptions): ResolveOptions {
  const { revision, cacheDir, token, endpoint, offline, fetch, lock } = options;
  return { revision, cacheDir, token, endpoint, offline, fetch, lock, onProgress: options.onDownloadProgress };
}

/** The directory of `idOrDir` when its config.json is the original layout's, else null (only config.json is fetched). */
export async function originalCheckpointDir(idOrDir: string, options: LoadOptions = {}): Promise<string | null> {
  const dir = await resolveModel(idOrDir, { ...resolveOptions(options), allowPatterns: ['config.json'] });
  const file = path.join(dir, 'config.json');
  const stat = await fsp.stat(file).catch(() => null);
  return stat?.isFile() && isOriginalConfig(await readJsonFile(file)) ? dir : null;
}

/** pytorch_model*.bin or safetensors, whichever the directory has (safetensors first, as transformers). */
export interface WeightSource {
  keys(): string[];
  info(key: string): { byteLength: number; dtype: DType; shape: number[] };
  readTensor(key: string): Promise<tf.Tensor>;
  readBytes(key: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function openWeights(dir: string): Promise<WeightSource> {
  const has = async (f: string) => (await fsp.stat(path.join(dir, f)).catch(() => null))?.isFile() ?? false;
  if ((await has(SINGLE_FILE)) || (await has(INDEX_FILE))) return Checkpoint.open(dir);
  return TorchCheckpoint.open(dir);
}

/**
 * The tower's directory: the option, else the config's mm_<kind>_tower resolved as builder.py does (a directory,
 * or a Hub id through the cache), except that a directory next to the model's named like the id's last part
 * (…/LanguageBind_Video_merge) is taken first, which is how `video-llava convert --to original` lays them out.
 */
async function towerDir(kind: 'video' | 'image', llava: Json, options: OriginalLoadOptions, file: string): Promise<string> {
  const field = `mm_${kind}_tower`;
  const given = kind === 'video' ? options.videoTower : options.imageTower;
  const name = given ?? llava[field];
  if (typeof name !== 'string') throw new ConfigError(field, 'absent: this package runs Video-LLaVA with both towers', file);
  const sibling = path.join(path.dirname(path.dirname(file)), path.basename(name));
  const isDir = async (d: string) => (await fsp.stat(d).catch(() => null))?.isDirectory() ?? false;
  if (given === undefined && !(await isDir(name)) && (await isDir(sibling))) return sibling;
  const patterns = options.towerWeights === 'embedded' ? ['config.json'] : TOWER_FILES;
  try {
    return await resolveModel(name, { ...resolveOptions(options), allowPatterns: patterns });
  } catch (e) {
    const flag = kind === 'video' ? 'videoTower (CLI --video-tower)' : 'imageTower (CLI --image-tower)';
    throw new WeightsError(`the ${kind} tower "${name}" (${field}) cannot be loaded: ${(e as Error).message}. Pass ${flag} with a local LanguageBind directory`);
  }
}

interface Source {
  dir: string;
  /** Checkpoint key → module path; null: a part of the repository this model does not use. */
  map: (key: string) => string | null;
  /** Whether this source supplies that module path. */
  owns: (path: string) => boolean;
}

/**
 * Fills `params` from the sources; every parameter must be found exactly once. Large weights stored in 16 bits stay
 * 16-bit outside the tensor heap as in loading.ts (the `dtype` / `computeDtype` options, ./weight_formats.ts), read
 * into memory (a PyTorch archive is not mapped); the whole is checked against the machine's memory before any read.
 */
async function fill(params: Map<string, Parameter>, sources: Source[], options: LoadOptions, dir: string): Promise<void> {
  const formats = checkFormatOptions(options);
  const found = new Set<string>();
  const plans: Array<{ weights: WeightSource; entries: Array<[string, string]> }> = [];
  const unexpected: string[] = [];
  try {
    for (const source of sources) {
      const weights = await openWeights(source.dir);
      plans.push({ weights, entries: [] });
      for (const key of weights.keys()) {
        const p = source.map(key);
        if (p === null || isIgnoredKey(key) || !source.owns(p)) continue;
        if (!params.has(p)) {
          unexpected.push(`${key} (${source.dir})`);
          continue;
        }
        if (found.has(p)) throw new WeightsError(`two checkpoint keys map to the same weight ${p} (one is ${key} in ${source.dir})`, key);
        found.add(p);
        plans[plans.length - 1].entries.push([key, p]);
      }
    }
    if (unexpected.some((k) => /\.(base_model|lora_[AB])\./.test(k))) {
      throw new WeightsError(`a tower's encoder is wrapped in an unmerged LoRA (lora_r > 0 in its config): ${unexpected.slice(0, 3).join(', ')}`);
    }
    if (unexpected.length > 0) {
      if (options.strict) throw new WeightsError(`${unexpected.length} checkpoint keys the model does not use: ${unexpected.slice(0, 5).join(', ')}`);
      options.onUnexpectedKeys?.(unexpected);
    }
    const missing = [...params.keys()].filter((p) => !found.has(p));
    if (missing.length > 0) throw new WeightsError(`the checkpoints lack ${missing.length} weights the model needs: ${missing.slice(0, 5).join(', ')}`);
    const formatOf = (weights: WeightSource, key: string, p: string) => storedFormat(params.get(p)!, weights.info(key).dtype, formats);
    checkFits(plans.flatMap(({ weights, entries }) => entries.map(([key, p]) => ({ size: params.get(p)!.size, stored: formatOf(weights, key, p) !== null }))), dir);
    const total = plans.reduce((s, p) => s + p.entries.length, 0);
    const bytesTotal = plans.reduce((s, p) => s + p.entries.reduce((b, [k]) => b + p.weights.info(k).byteLength, 0), 0);
    let tensorsLoaded = 0;
    let bytesLoaded = 0;
    for (const { weights, entries } of plans) {
      for (const [key, p] of entries) {
        const format = formatOf(weights, key, p);
        if (format) {
          const { dtype, shape } = weights.info(key);
          const weight = halfWeightFromBytes(await weights.readBytes(key), dtype, shape as [number, number], format, { file: dir, tensor: key });
          weight.compute = formats.computeDtype;
          params.get(p)!.setStored(weight, key);
        } else {
          params.get(p)!.set(await weights.readTensor(key), key);
        }
        bytesLoaded += weights.info(key).byteLength;
        options.onProgress?.({ tensorsLoaded: ++tensorsLoaded, tensorsTotal: total, bytesLoaded, bytesTotal });
      }
    }
  } finally {
    await Promise.all(plans.map((p) => p.weights.close()));
  }
}

/** The original Video-LLaVA checkpoint and its two LanguageBind towers, combined as builder.py does. */
export async function loadOriginalVideoLlava(idOrDir: string, options: OriginalLoadOptions = {}): Promise<VideoLlavaForConditionalGeneration> {
  const dir = await resolveModel(idOrDir, { ...resolveOptions(options), allowPatterns: ORIGINAL_FILES });
  const file = path.join(dir, 'config.json');
  const llava = await readJsonFile(file);
  if (!isOriginalConfig(llava)) throw new ConfigError('model_type', `${dir} is not an original Video-LLaVA checkpoint (no mm_video_tower / model_type "llava")`, file);
  const videoDir = await towerDir('video', llava, options, file);
  const imageDir = await towerDir('image', llava, options, file);
  const videoFile = path.join(videoDir, 'config.json');
  const imageFile = path.join(imageDir, 'config.json');
  const config = originalConfig(llava, await readJsonFile(videoFile), await readJsonFile(imageFile), { model: file, videoTower: videoFile, imageTower: imageFile });
  const model = new VideoLlavaForConditionalGeneration(config);
  try {
    const params = new Map(model.namedParameters());
    const isTower = (p: string) => /^model\.(video|image)_tower\./.test(p);
    const embedded = options.towerWeights === 'embedded';
    const sources: Source[] = [{ dir, map: originalToModulePath, owns: (p) => embedded || !isTower(p) }];
    if (!embedded) {
      sources.push({ dir: videoDir, map: (k) => towerToModulePath(k, 'video_tower'), owns: (p) => p.startsWith('model.video_tower.') });
      sources.push({ dir: imageDir, map: (k) => towerToModulePath(k, 'image_tower'), owns: (p) => p.startsWith('model.image_tower.') });
    }
    await fill(params, sources, options, dir);
    if (!params.has('lm_head.weight')) throw new WeightsError('unexpected: no lm_head');
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A LanguageBind tower repository alone: its CLIP vision tower (with temporal attention for the video tower). */
export async function loadLanguageBindTower(idOrDir: string, options: LoadOptions = {}): Promise<ClipVisionModel> {
  const dir = await resolveModel(idOrDir, { ...resolveOptions(options), allowPatterns: TOWER_FILES });
  const file = path.join(dir, 'config.json');
  const { vision, temporalFrames } = parseTowerConfig(await readJsonFile(file), file);
  const tower = new ClipVisionModel(vision, temporalFrames);
  try {
    const params = new Map(tower.namedParameters());
    const map = (k: string) => towerToModulePath(k, 'video_tower')?.slice('model.video_tower.'.length) ?? null;
    await fill(params, [{ dir, map, owns: () => true }], options, dir);
    return tower;
  } catch (e) {
    tower.dispose();
    throw e;
  }
}

/** Refuse up front what cannot fit (./memory.ts, as loading.ts does): float32 tensors in the heap, 16-bit weights beside it. */
function checkFits(weights: Array<{ size: number; stored: boolean }>, dir: string): void {
  let heapBytes = 0;
  let storedBytes = 0;
  for (const w of weights) {
    if (w.stored) storedBytes += w.size * 2;
    else heapBytes += w.size * 4;
  }
  checkWeightsFit({ heapBytes, storedBytes }, dir);
}

/** IMAGE_TOKEN_INDEX of the original code: one per image, num_frames consecutive ones per video. */
export const ORIGINAL_IMAGE_TOKEN_INDEX = -200;

export interface ExpandedIds {
  inputIds: number[][];
  attentionMask: number[][];
}

/**
 * Original-style input ids (tokenizer_image_token: -200 marks one image or one video frame) → this package's
 * expanded ids: each image slot becomes the image token repeated once per feature row, each frame slot the video
 * token once per frame row. `media` lists the batch's images and videos in the order the original `images` list
 * holds them (slots are consumed across rows, row 0 first, as prepare_inputs_labels_for_multimodal does). Rows are
 * padded to one length with pad_token_id on `paddingSide` (the original's tokenizer_padding_side, default right).
 */
export function expandOriginalIds(
  ids: number[][],
  media: Array<'image' | 'video'>,
  config: VideoLlavaConfig,
  framesPerVideo: number,
  paddingSide: 'left' | 'right' = 'right',
): ExpandedIds {
  const v = config.vision_config;
  const patches = Math.floor(v.image_size / v.patch_size) ** 2;
  const perImage = patches + (config.vision_feature_select_strategy === 'full' ? 1 : 0);
  const perFrame = patches + 1;
  const slots = media.flatMap((kind) => (kind === 'image' ? ['image' as const] : new Array<'video'>(framesPerVideo).fill('video')));
  let next = 0;
  const rows = ids.map((row) =>
    row.flatMap((id) => {
      if (id !== ORIGINAL_IMAGE_TOKEN_INDEX) return [id];
      const kind = slots[next++];
      if (kind === undefined) throw new InputError('inputIds', `more ${ORIGINAL_IMAGE_TOKEN_INDEX} placeholders than media slots (${slots.length}: images + videos × ${framesPerVideo} frames)`);
      return kind === 'image' ? new Array<number>(perImage).fill(config.image_token_index) : new Array<number>(perFrame).fill(config.video_token_index);
    }),
  );
  if (next !== slots.length) throw new InputError('inputIds', `${next} ${ORIGINAL_IMAGE_TOKEN_INDEX} placeholders for ${slots.length} media slots (images + videos × ${framesPerVideo} frames)`);
  const length = Math.max(...rows.map((r) => r.length));
  const pad = config.pad_token_id ?? 0;
  const padded = rows.map((r) => {
    const fill = new Array<number>(length - r.length).fill(pad);
    return paddingSide === 'left' ? [...fill, ...r] : [...r, ...fill];
  });
  const attentionMask = rows.map((r) => {
    const ones = new Array<number>(r.length).fill(1);
    const zeros = new Array<number>(length - r.length).fill(0);
    return paddingSide === 'left' ? [...zeros, ...ones] : [...ones, ...zeros];
  });
  return { inputIds: padded, attentionMask };
}

