/**
 * LoRA as PEFT 0.21.2 does it (vanilla LoRA on Linear layers): the targeted Linear layers get
 * lora_A [r, in] and lora_B [out, r], the output gains lora_B(lora_A(x)) · lora_alpha / r, and every base
 * weight is frozen. Parameter paths are PEFT's in-memory names without the adapter name, so the
 * adapter file keys are `base_model.model.` + path (src/training/save.ts reads and writes them).
 *
 * One adapter per model ("default"). Dropout is accepted in the config but not applied (inference,
 * and training as with lora_dropout = 0).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, WeightsError } from '../errors';
import { Linear } from '../layers/linear';
import { Module, Parameter } from '../layers/module';
import { Json } from '../models/config_fields';

export interface LoraConfig {
  r: number;
  lora_alpha: number;
  /** A regex (matched against the whole module path) or a list of names (a path equal to or ending in ".name"). */
  target_modules: string | string[];
  exclude_modules: string | string[] | null;
  lora_dropout: number;
  use_rslora: boolean; // scaling lora_alpha / √r instead of lora_alpha / r
  /** The whole adapter_config.json object, unknown fields included. */
  raw: Json;
  /** The adapter_config.json text it was read from (written back on save with its number literals). */
  text?: string;
}

export interface LoraOptions {
  r: number;
  lora_alpha: number;
  target_modules: string | string[];
  exclude_modules?: string | string[] | null;
  lora_dropout?: number;
  use_rslora?: boolean;
  /** true (PEFT's default): A Kaiming-uniform, B zero, so the model is unchanged; false: both random. */
  init_lora_weights?: boolean;
  base_model_name_or_path?: string | null;
}

/** Fields PEFT 0.21.2 writes whose non-default values change the computation in ways not implemented here. */
const UNSUPPORTED: Array<[string, (v: unknown) => boolean]> = [
  ['use_dora', (v) => v === true],
  ['fan_in_fan_out', (v) => v === true],
  ['lora_bias', (v) => v === true],
  ['bias', (v) => v !== undefined && v !== null && v !== 'none'],
  ['modules_to_save', (v) => Array.isArray(v) && v.length > 0],
  ['layers_to_transform', (v) => v !== undefined && v !== null],
  ['rank_pattern', (v) => !!v && typeof v === 'object' && Object.keys(v).length > 0],
  ['alpha_pattern', (v) => !!v && typeof v === 'object' && Object.keys(v).length > 0],
  ['layer_replication', (v) => v !== undefined && v !== null],
  ['trainable_token_indices', (v) => v !== undefined && v !== null],
  ['target_parameters', (v) => Array.isArray(v) && v.length > 0],
  ['use_qalora', (v) => v === true],
  ['alora_invocation_tokens', (v) => v !== undefined && v !== null],
];

function stringOrList(v: unknown, field: string, file?: string): string | string[] {
  if (typeof v === 'string' && v.length > 0) return v;
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string')) return v as string[];
  throw new ConfigError(field, `expected a regex string or a non-empty list of module names, found ${JSON.stringify(v)}`, file);
}

/** Reads an adapter_config.json object; rejects adapter kinds and options this implementation does not compute. */
export function parseLoraConfig(raw: Json, file?: string): LoraConfig {
  if (raw.peft_type !== 'LORA') throw new ConfigError('peft_type', `only "LORA" adapters are supported, found ${JSON.stringify(raw.peft_type)}`, file);
  for (const [field, bad] of UNSUPPORTED) {
    if (bad(raw[field])) throw new ConfigError(field, `value ${JSON.stringify(raw[field])} is not supported (vanilla LoRA on Linear layers only)`, file);
  }
  const r = raw.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) throw new ConfigError('r', `expected a positive integer, found ${JSON.stringify(r)}`, file);
  const alpha = raw.lora_alpha ?? 8;
  if (typeof alpha !== 'number') throw new ConfigError('lora_alpha', `expected a number, found ${JSON.stringify(alpha)}`, file);
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw new ConfigError('lora_dropout', `expected a number in [0, 1), found ${JSON.stringify(dropout)}`, file);
  const exclude = raw.exclude_modules === undefined || raw.exclude_modules === null ? null : stringOrList(raw.exclude_modules, 'exclude_modules', file);
  return {
    r,
    lora_alpha: alpha,
    target_modules: stringOrList(raw.target_modules, 'target_modules', file),
    exclude_modules: exclude,
    lora_dropout: dropout,
    use_rslora: raw.use_rslora === true,
    raw,
  };
}

/** The adapter_config.json PEFT 0.21.2 writes for a LoraConfig with these options on Video-LLaVA. */
export function loraConfigJson(options: LoraOptions): Json {
  return {
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: {
      base_model_class: 'VideoLlavaForConditionalGeneration',
      parent_library: 'transformers.models.video_llava.modeling_video_llava',
    },
    base_model_name_or_path: options.base_model_name_or_path ?? null,
    bias: 'none',
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: options.exclude_modules ?? null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: options.init_lora_weights ?? true,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: options.lora_alpha,
    lora_bias: false,
    lora_dropout: options.lora_dropout ?? 0,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    monteclora_config: null,
    peft_type: 'LORA',
    peft_version: '0.21.2',
    qalora_group_size: 16,
    r: options.r,
    rank_pattern: {},
    revision: null,
    target_modules: options.target_modules,
    target_parameters: null,
    task_type: null,
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: options.use_rslora ?? false,
    velora_config: null,
  };
}

export function loraScaling(config: LoraConfig): number {
  return config.use_rslora ? config.lora_alpha / Math.sqrt(config.r) : config.lora_alpha / config.r;
}

/** PEFT's rule: a string is a regex matched against the whole path; a list matches a path equal to or ending in ".name". */
function matchesModules(path: string, spec: string | string[]): boolean {
  if (typeof spec === 'string') return new RegExp(`^(?:${spec})$`).test(path);
  return spec.some((name) => path === name || path.endsWith(`.${name}`));
}

/** Module paths of the Linear layers an adapter with this config wraps, in tree order. */
export function loraTargets(model: Module, config: LoraConfig): Array<[string, Linear]> {
  const out: Array<[string, Linear]> = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '' || /\.lora_[AB]$/.test(path) || !matchesModules(path, config.target_modules)) continue;
    if (config.exclude_modules && matchesModules(path, config.exclude_modules)) continue;
    if (!(m instanceof Linear)) {
      throw new ConfigError('target_modules', `"${path}" is a ${m.constructor.name}; LoRA is implemented for Linear layers only`);
    }
    out.push([path, m]);
  }
  if (out.length === 0) {
    throw new ConfigError('target_modules', `${JSON.stringify(config.target_modules)} matches no module (paths look like "model.language_model.layers.0.self_attn.q_proj")`);
  }
  return out;
}

const ADAPTERS = new WeakMap<Module, LoraConfig>();

/** The config of the adapter attached to `model`, if any. */
export function loraConfigOf(model: Module): LoraConfig | undefined {
  return ADAPTERS.get(model);
}

/** The adapter's parameters (`…lora_A.weight`, `…lora_B.weight`), in tree order. */
export function loraParameters(model: Module): Array<[string, Parameter]> {
  return model.namedParameters().filter(([name]) => /\.lora_[AB]\.weight$/.test(name));
}

/**
 * Attaches empty adapters (parameters not loaded) to every target and freezes the base weights, as
 * get_peft_model does. Returns the targets. Used by addLora and by the adapter loader.
 */
export function attachLora(model: Module, config: LoraConfig): Array<[string, Linear]> {
  if (ADAPTERS.has(model)) throw new WeightsError('the model already has a LoRA adapter; merge or unload it first');
  const targets = loraTargets(model, config);
  const scaling = loraScaling(config);
  for (const [, p] of model.namedParameters()) p.trainable = false;
  for (const [, linear] of targets) linear.attachLora(config.r, scaling);
  ADAPTERS.set(model, config);
  return targets;
}

/**
 * get_peft_model: adds a fresh adapter and freezes everything else. With init_lora_weights true (default)
 * A is Kaiming-uniform (U(±1/√in), nn.Linear's init) and B is zero, so outputs are unchanged until
 * training; with false, B is random too. `seed` makes the initialisation reproducible.
 */
export function addLora(model: Module, options: LoraOptions, seed?: number): LoraConfig {
  const config = parseLoraConfig(loraConfigJson(options));
  const targets = attachLora(model, config);
  const randomB = options.init_lora_weights === false;
  targets.forEach(([, linear], i) => {
    const A = linear.lora_A!;
    const B = linear.lora_B!;
    const s = seed === undefined ? undefined : seed + 2 * i;
    const boundA = 1 / Math.sqrt(A.inFeatures);
    A.weight.set(tf.randomUniform(A.weight.shape as number[], -boundA, boundA, 'float32', s));
    const boundB = 1 / Math.sqrt(B.inFeatures);
    B.weight.set(randomB ? tf.randomUniform(B.weight.shape as number[], -boundB, boundB, 'float32', s === undefined ? undefined : s + 1) : tf.zeros(B.weight.shape as number[]));
  });
  return config;
}

function withAdapters(model: Module): Linear[] {
  return [...model.namedModules()]
    .map(([, m]) => m)
    .filter((m): m is Linear => m instanceof Linear && m.lora_A !== null);
}

/** merge_and_unload: W ← W + (B·A)·scaling in every wrapped layer, then the adapters are removed. */
export function mergeLora(model: Module): void {
  if (!ADAPTERS.has(model)) throw new WeightsError('the model has no LoRA adapter to merge');
  for (const linear of withAdapters(model)) {
    const trainable = linear.weight.trainable;
    // In storage layout (Wᵀ [in, out], Aᵀ [in, r], Bᵀ [r, out]): Wᵀ + (Aᵀ·Bᵀ)·scaling = (W + (B·A)·scaling)ᵀ.
    const merged = tf.tidy(() => tf.add(linear.weight.value, tf.mul(tf.matMul(linear.lora_A!.weight.value, linear.lora_B!.weight.value), linear.loraScaling)));
    linear.weight.value.assign(merged);
    merged.dispose();
    linear.weight.trainable = trainable;
    linear.detachLora();
  }
  ADAPTERS.delete(model);
}

/** unload: removes the adapters without merging them (the base model as it was). */
export function unloadLora(model: Module): void {
  for (const linear of withAdapters(model)) linear.detachLora();
  ADAPTERS.delete(model);
}
