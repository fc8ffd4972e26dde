/**
 * Key/value caches for the decoder: per layer, keys and values after RoPE, [B, Hkv, T, D].
 *
 * tfjs tensors are immutable, so "appending" means building a new tensor. A cache that concatenates its
 * whole history every step (DynamicCache) copies O(T) floats per layer per step. BlockKVCache keeps the
 * history as a list of frozen blocks plus one open tail block: a step only re-concatenates the tail
 * (fewer than `blockSize` positions), and attention runs over the blocks without joining them
 * (blockAttention), so the per-step copy cost does not grow with the cache length.
 *
 * A cache owns its tensors; dispose() frees them.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { scaledDotProductAttention } from '../layers/attention';
import { fusedAttention } from '../native/attention';

/** The cached keys and values of one layer, as consecutive blocks along the position axis. */
export interface KVBlocks {
  keys: tf.Tensor4D[]; // each [B, Hkv, Tᵢ, D]; Σ Tᵢ = past + L
  values: tf.Tensor4D[]; // same shapes as keys
}

export interface KVCache {
  /** Positions already cached (before the current call). */
  readonly length: number;
  /** Adds this step's keys/values [B, Hkv, L, D] for `layer`; returns every cached block, new ones included. */
  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): KVBlocks;
  /** Called once per forward after every layer has been updated. */
  commit(newTokens: number): void;
  dispose(): void;
}

/** The simple cache: one tensor per layer, concatenated anew each step (O(T) copy per step). */
export class DynamicCache implements KVCache {
  private keys: tf.Tensor4D[] = [];
  private values: tf.Tensor4D[] = [];
  private seen = 0;

  get length(): number {
    return this.seen;
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): KVBlocks {
    this.keys[layer] = append(this.keys[layer], k);
    this.values[layer] = append(this.values[layer], v);
    return { keys: [this.keys[layer]], values: [this.values[layer]] };
  }

  commit(newTokens: number): void {
    this.seen += newTokens;
  }

  dispose(): void {
    tf.dispose([...this.keys, ...this.values].filter((t) => t !== undefined));
    this.keys = [];
    this.values = [];
    this.seen = 0;
  }
}

/** Default positions per frozen block; the per-step copy is at most this many positions. */
export const DEFAULT_BLOCK_SIZE = 64;

interface LayerBlocks {
  frozen: KVBlocks; // never copied again
  tailK: tf.Tensor4D | null; // the open block, fewer than blockSize positions
  tailV: tf.Tensor4D | null;
}

/**
 * Block cache: the open tail block grows by concatenation until it holds `blockSize` positions, then it
 * is frozen and a new tail starts. A prefill of L ≥ blockSize positions becomes one frozen block as is.
 */
export class BlockKVCache implements KVCache {
  private layers: LayerBlocks[] = [];
  private seen = 0;

  constructor(readonly blockSize = DEFAULT_BLOCK_SIZE) {
    if (!Number.isInteger(blockSize) || blockSize < 1) {
      throw new InputError('blockSize', `expected a positive integer, found ${blockSize}`);
    }
  }

  get length(): number {
    return this.seen;
  }

  /** Number of tensors held per layer (frozen blocks + tail), for tests and benchmarks. */
  blockCount(layer: number): number {
    const l = this.layers[layer];
    return l ? l.frozen.keys.length + (l.tailK ? 1 : 0) : 0;
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): KVBlocks {
    const l = (this.layers[layer] ??= { frozen: { keys: [], values: [] }, tailK: null, tailV: null });
    const tailK = append(l.tailK ?? undefined, k);
    const tailV = append(l.tailV ?? undefined, v);
    if (tailK.shape[2] >= this.blockSize) {
      l.frozen.keys.push(tailK);
      l.frozen.values.push(tailV);
      l.tailK = l.tailV = null;
      return { keys: [...l.frozen.keys], values: [...l.frozen.values] };
    }
    l.tailK = tailK;
    l.tailV = tailV;
    return { keys: [...l.frozen.keys, tailK], values: [...l.frozen.values, tailV] };
  }

  commit(newTokens: number): void {
    this.seen += newTokens;
  }

  dispose(): void {
    for (const l of this.layers) {
      tf.dispose([...l.frozen.keys, ...l.frozen.values]);
      if (l.tailK) tf.dispose([l.tailK, l.tailV!]);
    }
    this.layers = [];
    this.seen = 0;
  }
}

/** old ⧺ x along the position axis, as a kept tensor; frees `old`. Called inside the attention's tidy. */
function append(old: tf.Tensor4D | undefined, x: tf.Tensor4D): tf.Tensor4D {
  const joined = old ? (tf.concat([old, x], 2) as tf.Tensor4D) : x.clone();
  tf.keep(joined);
  old?.dispose();
  return joined;
}

/**
 * softmax(q·Kᵀ·scale + mask)·V where K and V are given as blocks along the key axis. q [B, H, L, D],
 * blocks [B, Hkv, Tᵢ, D], mask additive and broadcastable to [B, H, L, ΣTᵢ]. One block is exactly the
 * uncached path (scaledDotProductAttention). With several, the score blocks are concatenated (a copy of
 * H·L·T floats, not H·T·D) so the softmax is taken over every key at once, and the probability blocks
 * are multiplied with their value blocks and summed. Grouped-query heads are handled by folding the
 * query heads of a group into the query axis instead of repeating keys and values.
 * Returns [B, H, L, D] and, when asked, the probabilities [B, H, L, ΣTᵢ].
 */
export function blockAttention(
  q: tf.Tensor4D,
  blocks: KVBlocks,
  scale: number,
  mask: tf.Tensor | null,
  returnProbs = false,
): { output: tf.Tensor4D; probs?: tf.Tensor4D } {
  if (blocks.keys.length === 1) return scaledDotProductAttention(q, blocks.keys[0], blocks.values[0], scale, mask, returnProbs);
  const fused = returnProbs ? null : fusedAttention(q, blocks.keys, blocks.values, scale, mask);
  if (fused) return { output: fused };
  const probsOut: { probs?: tf.Tensor4D } = {};
  const output = tf.tidy(() => {
    const [B, H, L, D] = q.shape;
    const Hkv = blocks.keys[0].shape[1];
    const grouped = tf.reshape(q, [B, Hkv, (H / Hkv) * L, D]); // heads of a group are consecutive
    const parts = blocks.keys.map((k) => tf.matMul(grouped, k, false, true)); // [B, Hkv, g·L, Tᵢ]
    let scores = tf.mul(tf.reshape(tf.concat(parts, 3), [B, H, L, -1]), scale);
    if (mask) scores = tf.add(scores, mask);
    const probs = tf.softmax(scores, -1) as tf.Tensor4D;
    if (returnProbs) probsOut.probs = tf.keep(probs);
    const pieces = tf.split(tf.reshape(probs, [B, Hkv, (H / Hkv) * L, -1]), blocks.values.map((v) => v.shape[2]), 3);
    const summed = pieces.map((p, i) => tf.matMul(p, blocks.values[i])).reduce((a, b) => tf.add(a, b));
    return tf.reshape(summed, [B, H, L, D]) as tf.Tensor4D;
  });
  return { output, ...probsOut };
}
