/**
 * Deterministic synthetic weights, keyed by checkpoint key name: the twin of reference/synthetic.py.
 * Both produce bit-identical float32 values, so a checkpoint too large to commit (the 7B-width slice
 * under test/fixtures/cases/slice7b) can be rebuilt on either side from its key names and shapes.
 *
 * Formula, for a tensor called `name` (its key as save_pretrained writes it) with shape `shape`:
 *
 *   seed = FNV-1a 32-bit hash of the UTF-8 bytes of `name`
 *          (h = 2166136261; for each byte b: h = ((h XOR b) * 16777619) mod 2^32)
 *
 *   for element i (row-major, 0-based; i < 2^32):
 *       h = (i * 0x9E3779B1 + seed) mod 2^32
 *       h = h XOR (h >>> 16)
 *       h = (h * 0x85EBCA6B)        mod 2^32
 *       h = h XOR (h >>> 13)
 *       h = (h * 0xC2B2AE35)        mod 2^32
 *       h = h XOR (h >>> 16)
 *       u = (h >>> 8) / 2^24                      exact, in [0, 1)
 *       r = 2 * u - 1                             exact, in [-1, 1)
 *       value = float32(base + r * scale)         float64 multiply and add, one rounding to float32
 *
 *   base and scale, checked in this order:
 *       1. 1-D, name ends with ".weight" and contains "norm" (LayerNorm / RMSNorm gains; "pre_layrnorm"
 *          contains "norm" too)                                        base 1, scale 0.1
 *       2. name ends with ".bias" (any rank)                             base 0, scale 0.02
 *       3. any other 1-D tensor (e.g. "...class_embedding")              base 0, scale 0.02
 *       4. everything else: fan_in = product of all dims but the first   base 0, scale 1 / sqrt(fan_in)
 *          (embed_tokens and lm_head [vocab, hidden] get 1 / sqrt(hidden); patch_embedding
 *          [out, 3, p, p] gets 1 / sqrt(3 p p)). 1 / Math.sqrt(fan_in) is correctly rounded, as in Python.
 *
 * The 32-bit products use Math.imul (exact low 32 bits), `>>> 0` brings values back to unsigned, and
 * Math.fround does the final rounding.
 */
import { InputError } from '../errors';

const FNV_OFFSET = 2166136261;
const FNV_PRIME = 16777619;
const TWO_POW_24 = 16777216;
const MAX_ELEMENTS = 2 ** 32;
// Bound once: inside a vm context (jest) every lookup of the global `Math` goes through the context's
// interceptors, which made the loop below ~100x slower.
const imul = Math.imul;
const fround = Math.fround;

/** FNV-1a 32-bit hash of the UTF-8 bytes of `name` (an unsigned 32-bit integer). */
export function syntheticSeed(name: string): number {
  const bytes = new TextEncoder().encode(name);
  let h = FNV_OFFSET;
  for (let k = 0; k < bytes.length; k++) {
    h = imul(h ^ bytes[k], FNV_PRIME) >>> 0;
  }
  return h;
}

/** The (base, scale) pair of the formula for this tensor. */
export function syntheticBaseScale(name: string, shape: readonly number[]): { base: number; scale: number } {
  if (shape.length === 1 && name.endsWith('.weight') && name.includes('norm')) return { base: 1, scale: 0.1 };
  if (name.endsWith('.bias')) return { base: 0, scale: 0.02 };
  if (shape.length <= 1) return { base: 0, scale: 0.02 };
  let fanIn = 1;
  for (let d = 1; d < shape.length; d++) fanIn *= shape[d];
  return { base: 0, scale: 1 / Math.sqrt(fanIn) };
}

function elementCount(name: string, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new InputError('shape', `${name}: dimensions must be non-negative integers, found [${shape.join(', ')}]`);
    }
    n *= d;
  }
  if (n >= MAX_ELEMENTS) {
    throw new InputError('shape', `${name}: ${n} elements; the formula indexes elements with 32 bits (< 2^32)`);
  }
  return n;
}

/** The synthetic float32 tensor for checkpoint key `name`, row-major with the given shape. */
export function syntheticWeight(name: string, shape: number[]): Float32Array {
  const n = elementCount(name, shape);
  return fill(new Float32Array(n), 0, syntheticSeed(name), syntheticBaseScale(name, shape));
}

/**
 * Elements [start, start + count) of the same tensor (row-major), without building the rest: for spot
 * checks of large tensors.
 */
export function syntheticRange(name: string, shape: number[], start: number, count: number): Float32Array {
  const n = elementCount(name, shape);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > n) {
    throw new InputError('range', `${name}: [${start}, ${start} + ${count}) is outside the ${n} elements`);
  }
  return fill(new Float32Array(count), start, syntheticSeed(name), syntheticBaseScale(name, shape));
}

function fill(out: Float32Array, start: number, seed: number, { base, scale }: { base: number; scale: number }): Float32Array {
  for (let k = 0; k < out.length; k++) {
    let h = (imul(start + k, 0x9e3779b1) + seed) >>> 0;
    h ^= h >>> 16;
    h = imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    const r = 2 * ((h >>> 8) / TWO_POW_24) - 1; // exact: (h >>> 8) < 2^24
    out[k] = fround(base + r * scale);
  }
  return out;
}
