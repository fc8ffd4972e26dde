/**
 * Which Linear modules transformers (5.24) quantizes with bitsandbytes: every `nn.Linear` whose path does
 * not match a pattern of `modules_to_not_convert`. That list is `llm_int8_skip_modules` when the config
 * gives one; otherwise transformers' default for the model (`get_keys_to_not_convert`: tied weights, the
 * last parameter's module and the output embedding), which for VideoLlavaForConditionalGeneration is
 * ["lm_head"]: both CLIP towers, the projector and every decoder Linear are quantized, the LM head is not.
 * Embeddings, the patch-embedding Conv2d and the norms are never quantized (they are not nn.Linear).
 *
 * Paths are module paths in the current transformers layout (`model.language_model.layers.0.mlp.up_proj`,
 * `lm_head`), the names patterns are matched against in Python, not the legacy checkpoint keys.
 */
import { ConfigError } from '../errors';
import type { BitsAndBytesConfig } from './config';

/** modules_to_not_convert transformers computes for VideoLlavaForConditionalGeneration (checked in gen_bnb.py). */
export const VIDEO_LLAVA_DEFAULT_SKIP: readonly string[] = ['lm_head'];

/**
 * modules_to_not_convert: `llm_int8_skip_modules` if set (it replaces the default, so a list without
 * "lm_head" quantizes the LM head too), else the model's default.
 */
export function modulesToNotConvert(cfg: Pick<BitsAndBytesConfig, 'llm_int8_skip_modules'>, modelDefault = VIDEO_LLAVA_DEFAULT_SKIP): string[] {
  return [...new Set(cfg.llm_int8_skip_modules ?? modelDefault)];
}

/**
 * should_convert_module: a module is kept unquantized when a pattern matches its path
 * 1. as a prefix ending at a module boundary ("layers.1" matches "layers.1.mlp", not "layers.11.mlp"),
 * 2. as a regular expression from the start, with the same boundary ("layers\..*\.q_proj"), or
 * 3. as a plain suffix ("fc1" matches "model.image_tower.encoder.layers.0.mlp.fc1").
 * Patterns are Python regular expressions; the common subset (., *, +, ?, [], |, groups) means the same here.
 */
export function isQuantizedModule(path: string, patterns: readonly string[]): boolean {
  return !patterns.some((p) => compilePattern(p).test(path) || path.endsWith(p));
}

const compiled = new Map<string, RegExp>();

function compilePattern(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    try {
      re = new RegExp(`^(?:${pattern})(?:(?<=\\.)|(?=\\.|$))`);
    } catch (e) {
      throw new ConfigError('quantization_config.llm_int8_skip_modules', `"${pattern}" is not a valid pattern: ${(e as Error).message}`);
    }
    compiled.set(pattern, re);
  }
  return re;
}

/** The Linear module paths (of `linearPaths`) that get quantized under `cfg`. */
export function quantizedModules(
  linearPaths: readonly string[],
  cfg: Pick<BitsAndBytesConfig, 'llm_int8_skip_modules'>,
  modelDefault = VIDEO_LLAVA_DEFAULT_SKIP,
): string[] {
  const patterns = modulesToNotConvert(cfg, modelDefault);
  return linearPaths.filter((p) => isQuantizedModule(p, patterns));
}
