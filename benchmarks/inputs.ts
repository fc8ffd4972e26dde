/**
 * Benchmark inputs, identical bit for bit on both sides without passing arrays through the pipe.
 *
 * A float input called `name` with shape `shape` is the synthetic-weight formula of
 * src/weights/synthetic.ts (reference/synthetic.py) times a power of two that brings it to about ±1:
 *
 *   benchInput(name, shape) = syntheticWeight(name, shape) · 2^k,  k = floor(log2(fan_in) / 2)
 *
 * (fan_in = product of all dims but the first, as in the formula; multiplying by 2^k is exact in
 * float32). torch_bench.py builds the same arrays with reference/synthetic.py.
 *
 * Token ids are small lists, so the orchestrator computes them here and sends them to both workers.
 */
import { syntheticWeight } from '../src/weights/synthetic';
import { VideoLlavaConfig } from '../src/models/video_llava/config';

export function inputExponent(shape: readonly number[]): number {
  let fanIn = 1;
  for (let d = 1; d < shape.length; d++) fanIn *= shape[d];
  return Math.floor(Math.log2(fanIn) / 2);
}

export function benchInput(name: string, shape: number[]): Float32Array {
  const x = syntheticWeight(name, shape);
  const f = 2 ** inputExponent(shape);
  for (let i = 0; i < x.length; i++) x[i] *= f;
  return x;
}

/** Names of the synthetic inputs, shared with torch_bench.py. */
export const INPUT_NAMES = {
  pixels: 'bench.pixel_values_videos',
  projector: 'bench.projector_input',
  cacheKey: (layer: number) => `bench.cache.${layer}.key`,
  cacheValue: (layer: number) => `bench.cache.${layer}.value`,
};

/**
 * `count` ordinary text ids (3 … first special id − 1), spread by a multiplicative step so that
 * neighbouring positions differ: id_i = 3 + (offset + 7919·i) mod (first special − 3).
 */
export function textIds(cfg: VideoLlavaConfig, count: number, offset = 0): number[] {
  const specials = [cfg.image_token_index, cfg.video_token_index, cfg.pad_token_id ?? Infinity];
  const limit = Math.min(cfg.text_config.vocab_size, ...specials);
  const span = limit - 3;
  return Array.from({ length: count }, (_, i) => 3 + ((offset + 7919 * i) % span));
}
