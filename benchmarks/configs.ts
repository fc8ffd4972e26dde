/**
 * What the benchmarks run: three model configurations (tiny, small, a slice at the real 7B widths), the
 * workload of each stage, and the analytic FLOP and GEMM accounting used for rooflines and for the
 * extrapolation to the full Video-LLaVA-7B.
 *
 * FLOPs count matrix multiplications only (2·m·k·n each), as the implementations run them: attention
 * scores are the full L × (past + L) rectangle (both eager paths compute it and mask afterwards); norms,
 * activations, softmax, RoPE and adds are left out (under 1 % at these widths).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Json } from '../src/models/config_fields';
import { VideoLlavaConfig, featureLayers, parseVideoLlavaConfig } from '../src/models/video_llava/config';
import { clipGrid } from '../src/models/clip/config';

/** Repository root whatever the build folder (benchmarks/ run from source, or .bench-build/benchmarks/). */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'src'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

export type ConfigName = 'tiny' | 'small' | 'slice7b';
export const CONFIG_NAMES: readonly ConfigName[] = ['tiny', 'small', 'slice7b'];

export interface Workload {
  /** Video frames through the video tower in one call (per-frame time = time / frames). */
  visionFrames: number;
  /** Frames' worth of tower features through the projector in one call. */
  projectorFrames: number;
  /** Prompt length of the prefill (text tokens, fresh cache, logits for the last position only). */
  prefillLength: number;
  /** Cache lengths at which one decode step is timed. */
  decodeLengths: number[];
}

export interface BenchConfig {
  name: ConfigName;
  description: string;
  /** The config.json text both implementations load (written byte for byte). */
  configText: string;
  config: VideoLlavaConfig;
  /** A committed checkpoint directory to load as is; otherwise a synthetic one is written to a temp dir. */
  fixtureDir?: string;
  workload: Workload;
}

/** Cache lengths of the decode stage; 2074 = 8 frames × 257 video tokens + an 18-token prompt. */
export const DEFAULT_DECODE_LENGTHS = [16, 256, 1024, 2074];

/**
 * Sets integer fields inside one top-level block of a config.json text, leaving every other byte as it
 * is: transformers' strict config classes refuse an integer where the file had a float (1 for 1.0),
 * and JSON.parse + JSON.stringify would turn 1.0 into 1.
 */
function setIntFields(text: string, block: string, fields: Record<string, number>): string {
  const open = text.indexOf(`"${block}": {`);
  if (open < 0) throw new Error(`config text has no "${block}" block`);
  let depth = 0;
  let end = text.indexOf('{', open);
  for (let i = end; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) {
      end = i;
      break;
    }
  }
  let body = text.slice(open, end);
  for (const [field, value] of Object.entries(fields)) {
    const re = new RegExp(`("${field}":\\s*)-?\\d+(?=[,\\s}])`);
    if (!re.test(body)) throw new Error(`config text has no integer "${block}.${field}"`);
    body = body.replace(re, `$1${value}`);
  }
  return text.slice(0, open) + body + text.slice(end);
}

/**
 * A ~190M-parameter model: CLIP-B/16-like towers (768 wide, 12 heads, 3072 MLP, patch 16 at 224 px,
 * 197 positions) cut to 4 layers each, and a 12-layer 768-wide Llama (12 heads of 64, 2048 MLP) with the
 * real 32064-token vocabulary. Everything else as in the 7B slice's config.json.
 */
function smallText(sliceText: string): string {
  const text = setIntFields(sliceText, 'text_config', {
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 12,
    head_dim: 64,
  });
  return setIntFields(text, 'vision_config', {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 4,
    num_attention_heads: 12,
    patch_size: 16,
    image_size: 224,
    projection_dim: 512,
  });
}

export function loadBenchConfigs(root = repoRoot()): BenchConfig[] {
  const tinyDir = path.join(root, 'test', 'fixtures', 'models', 'faithful');
  const sliceText = fs.readFileSync(path.join(root, 'test', 'fixtures', 'cases', 'slice7b', 'config.json'), 'utf8');
  const tinyText = fs.readFileSync(path.join(tinyDir, 'config.json'), 'utf8');
  const make = (name: ConfigName, description: string, configText: string, workload: Workload, fixtureDir?: string): BenchConfig => ({
    name,
    description,
    configText,
    config: parseVideoLlavaConfig(JSON.parse(configText) as Json),
    fixtureDir,
    workload,
  });
  return [
    make(
      'tiny',
      'test/fixtures/models/faithful (CLIP 32 wide × 3 layers at 28 px; Llama 64 wide × 2 layers; vocab 128)',
      tinyText,
      { visionFrames: 8, projectorFrames: 8, prefillLength: 2074, decodeLengths: DEFAULT_DECODE_LENGTHS },
      tinyDir,
    ),
    make(
      'small',
      'CLIP-B/16-like towers (768 × 4 layers, 224 px) + Llama 768 wide × 12 layers, vocab 32064',
      smallText(sliceText),
      { visionFrames: 1, projectorFrames: 1, prefillLength: 64, decodeLengths: DEFAULT_DECODE_LENGTHS },
    ),
    make(
      'slice7b',
      'real 7B widths: CLIP-L/14 × 2 layers per tower, Llama-2-7B × 1 layer, vocab 32064 (test/fixtures/cases/slice7b)',
      sliceText,
      { visionFrames: 1, projectorFrames: 1, prefillLength: 32, decodeLengths: DEFAULT_DECODE_LENGTHS },
    ),
  ];
}

/** The full LanguageBind/Video-LLaVA-7B-hf: the slice's widths with 24 CLIP layers and 32 decoder layers. */
export function full7bConfig(slice: BenchConfig): VideoLlavaConfig {
  const c = slice.config;
  return {
    ...c,
    vision_config: { ...c.vision_config, num_hidden_layers: 24 },
    text_config: { ...c.text_config, num_hidden_layers: 32 },
  };
}

// ---------------------------------------------------------------------------------------------------
// Parameter counts

export interface ParamCounts {
  towerEach: number;
  projector: number;
  decoderLayers: number;
  embedTokens: number;
  lmHead: number;
  total: number;
}

export function paramCounts(cfg: VideoLlavaConfig): ParamCounts {
  const v = cfg.vision_config;
  const t = cfg.text_config;
  const { positions } = clipGrid(v);
  const D = v.hidden_size;
  const clipLayer = 4 * (D * D + D) + 2 * D * v.intermediate_size + v.intermediate_size + D + 4 * D;
  const towerEach = D + D * v.num_channels * v.patch_size ** 2 + positions * D + 4 * D + v.num_hidden_layers * clipLayer;
  const inDim = D * featureLayers(cfg).length;
  const Dt = t.hidden_size;
  const bias = cfg.multimodal_projector_bias ? 1 : 0;
  const projector = inDim * Dt + Dt * Dt + 2 * bias * Dt;
  const q = t.num_attention_heads * t.head_dim;
  const kv = t.num_key_value_heads * t.head_dim;
  const llamaLayer = Dt * q + 2 * Dt * kv + q * Dt + 3 * Dt * t.intermediate_size + 2 * Dt;
  const decoderLayers = t.num_hidden_layers * llamaLayer + Dt;
  const embedTokens = t.vocab_size * Dt;
  const lmHead = t.vocab_size * Dt;
  return { towerEach, projector, decoderLayers, embedTokens, lmHead, total: 2 * towerEach + projector + decoderLayers + embedTokens + lmHead };
}

// ---------------------------------------------------------------------------------------------------
// GEMMs and FLOPs of each stage

/** One matrix product as the TypeScript model issues it: [batch, m, k] · op([batch, k, n]). */
export interface Gemm {
  label: string;
  batch: number;
  m: number;
  k: number;
  n: number;
  /** The right operand is stored [n, k] and multiplied transposed (x·Wᵀ, q·kᵀ). */
  transB: boolean;
  /** How many times the stage issues this product. */
  count: number;
}

export function gemmFlops(g: Gemm): number {
  return 2 * g.batch * g.m * g.k * g.n * g.count;
}

export function stageFlops(gemms: Gemm[]): number {
  return gemms.reduce((s, g) => s + gemmFlops(g), 0);
}

/** The video tower over `frames` frames, every encoder layer (what the `vision` stage times). */
export function visionGemms(cfg: VideoLlavaConfig, frames: number, layers = cfg.vision_config.num_hidden_layers): Gemm[] {
  const v = cfg.vision_config;
  const { patches, positions: P } = clipGrid(v);
  const D = v.hidden_size;
  const H = v.num_attention_heads;
  const hd = D / H;
  const M = frames * P;
  return [
    { label: 'patch embedding', batch: 1, m: frames * patches, k: v.num_channels * v.patch_size ** 2, n: D, transB: true, count: 1 },
    { label: 'q/k/v/out proj', batch: 1, m: M, k: D, n: D, transB: true, count: 4 * layers },
    { label: 'fc1', batch: 1, m: M, k: D, n: v.intermediate_size, transB: true, count: layers },
    { label: 'fc2', batch: 1, m: M, k: v.intermediate_size, n: D, transB: true, count: layers },
    { label: 'scores q·kᵀ', batch: frames * H, m: P, k: hd, n: P, transB: true, count: layers },
    { label: 'probs·v', batch: frames * H, m: P, k: P, n: hd, transB: false, count: layers },
  ];
}

/** The projector over `frames` frames of tower features (video frames keep CLS: P positions each). */
export function projectorGemms(cfg: VideoLlavaConfig, frames: number): Gemm[] {
  const v = cfg.vision_config;
  const M = frames * clipGrid(v).positions;
  const inDim = v.hidden_size * featureLayers(cfg).length;
  const Dt = cfg.text_config.hidden_size;
  return [
    { label: 'linear_1', batch: 1, m: M, k: inDim, n: Dt, transB: true, count: 1 },
    { label: 'linear_2', batch: 1, m: M, k: Dt, n: Dt, transB: true, count: 1 },
  ];
}

/** `newTokens` tokens through every decoder layer after `past` cached ones, then logits for the last one. */
export function decoderGemms(cfg: VideoLlavaConfig, newTokens: number, past: number, layers = cfg.text_config.num_hidden_layers): Gemm[] {
  const t = cfg.text_config;
  const D = t.hidden_size;
  const H = t.num_attention_heads;
  const hd = t.head_dim;
  const q = H * hd;
  const kv = t.num_key_value_heads * hd;
  const L = newTokens;
  const T = past + newTokens;
  const gemms: Gemm[] = [
    { label: 'q_proj', batch: 1, m: L, k: D, n: q, transB: true, count: layers },
    { label: 'k/v_proj', batch: 1, m: L, k: D, n: kv, transB: true, count: 2 * layers },
    { label: 'o_proj', batch: 1, m: L, k: q, n: D, transB: true, count: layers },
    { label: 'gate/up_proj', batch: 1, m: L, k: D, n: t.intermediate_size, transB: true, count: 2 * layers },
    { label: 'down_proj', batch: 1, m: L, k: t.intermediate_size, n: D, transB: true, count: layers },
    { label: 'scores q·kᵀ', batch: H, m: L, k: hd, n: T, transB: true, count: layers },
    { label: 'probs·v', batch: H, m: L, k: T, n: hd, transB: false, count: layers },
    { label: 'lm_head (last position)', batch: 1, m: 1, k: D, n: t.vocab_size, transB: true, count: 1 },
  ];
  return gemms;
}

/** Bytes of float32 weights one decode step reads (every decoder layer and the LM head). */
export function decodeWeightBytes(cfg: VideoLlavaConfig, layers = cfg.text_config.num_hidden_layers): number {
  const p = paramCounts({ ...cfg, text_config: { ...cfg.text_config, num_hidden_layers: layers } });
  return 4 * (p.decoderLayers + p.lmHead);
}

/** Unique GEMM shapes of a list, counts summed, for measuring each shape once. */
export function uniqueShapes(gemms: Gemm[]): Gemm[] {
  const seen = new Map<string, Gemm>();
  for (const g of gemms) {
    const key = gemmKey(g);
    const prev = seen.get(key);
    if (prev) prev.count += g.count;
    else seen.set(key, { ...g });
  }
  return [...seen.values()];
}

export function gemmKey(g: Pick<Gemm, 'batch' | 'm' | 'k' | 'n' | 'transB'>): string {
  return `${g.batch}x${g.m}x${g.k}x${g.n}${g.transB ? 'T' : 'N'}`;
}
