import * as tf from '@tensorflow/tfjs';
import { fusedAttention } from '../native/attention';
import { platform } from '../platform';

/**
 * The additive mask value for disallowed positions: float32's lowest finite value, as the reference's
 * eager attention uses. score + MASK_MIN rounds to MASK_MIN, so a fully masked row becomes uniform
 * (exactly like the reference) instead of NaN.
 */
export const MASK_MIN = -3.4028234663852886e38;

/**
 * softmax(q·kᵀ·scale + mask)·v with q [B, H, Lq, D], k and v [B, Hkv, Lk, D] (Hkv divides H: grouped
 * query attention repeats each key/value head H/Hkv times), mask additive and broadcastable to
 * [B, H, Lq, Lk]. Returns [B, H, Lq, D] and, when asked, the probabilities.
 */
export function scaledDotProductAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  mask: tf.Tensor | null,
  returnProbs = false,
): { output: tf.Tensor4D; probs?: tf.Tensor4D } {
  if (!returnProbs) {
    const fused = fusedAttention(q, [k], [v], scale, mask);
    if (fused) return { output: fused };
    if (useHeadByHead(q, k)) return { output: headByHeadAttention(q, k, v, scale, mask) };
  }
  const probsOut: { probs?: tf.Tensor4D } = {};
  const output = tf.tidy(() => {
    const groups = q.shape[1] / k.shape[1];
    const kk = groups > 1 ? repeatKv(k, groups) : k;
    const vv = groups > 1 ? repeatKv(v, groups) : v;
    let scores = tf.mul(tf.matMul(q, kk, false, true), scale);
    if (mask) scores = tf.add(scores, mask);
    const probs = tf.softmax(scores, -1) as tf.Tensor4D;
    if (returnProbs) probsOut.probs = tf.keep(probs);
    return tf.matMul(probs, vv) as tf.Tensor4D;
  });
  return { output, ...probsOut };
}

/**
 * Attention products at least this big (query rows × key columns) go head by head on the stock wasm
 * backend. Its BatchMatMul hands a product to XNNPACK only for a single [M, K]·[K, N] pair with the right
 * operand not transposed; batched products (batch = heads) and q·kᵀ run on a scalar loop at 2–3 GFLOPS.
 * One 2-D product per head runs at ~10 GFLOPS at 512 positions (benchmarks/RESULTS.md); below 64 × 64 the
 * per-call overhead wins.
 */
export const HEAD_BY_HEAD_MIN_SCORES = 64 * 64;

/**
 * On any backend, attention whose float32 scores for all heads would take at least this many bytes goes
 * head by head: the batched path holds [B, H, Lq, Lk] scores several times over (scores, masked,
 * probabilities: 1.6 GiB for a 2074-token prompt at 32 heads), which the 4 GiB wasm heap cannot hold next
 * to a model; head by head holds one head's.
 */
export const HEAD_BY_HEAD_MIN_SCORE_BYTES = 64 * 2 ** 20;

/** Whether scaledDotProductAttention goes head by head for these shapes on the current backend. */
export function useHeadByHead(q: { shape: readonly number[] }, k: { shape: readonly number[] }): boolean {
  const [B, H, Lq] = q.shape;
  const Lk = k.shape[2];
  if (B * H < 2) return false; // the batched call is already a single product
  if (4 * B * H * Lq * Lk >= HEAD_BY_HEAD_MIN_SCORE_BYTES) return true;
  if (Lq * Lk < HEAD_BY_HEAD_MIN_SCORES) return false;
  return tf.getBackend() === 'wasm' && !platform.nativeKernelsActive('wasm');
}

/**
 * The same result, one head at a time: q_h · (k_h)ᵀ as a plain product with kᵀ laid out once per call,
 * mask, softmax, · v_h; grouped heads index their key/value head instead of repeating it. Only one
 * head's [Lq, Lk] scores exist at a time (the batched path holds B·H of them, several times over).
 */
function headByHeadAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, mask: tf.Tensor | null): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, Lq, D] = q.shape;
    const [, Hkv, Lk] = k.shape;
    const groups = H / Hkv;
    const qs = tf.unstack(tf.reshape(q, [B * H, Lq, D]));
    const kts = tf.unstack(tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [B * Hkv, D, Lk]));
    const vs = tf.unstack(tf.reshape(v, [B * Hkv, Lk, D]));
    let masks: tf.Tensor[] = [];
    let maskB = 1;
    let maskH = 1;
    if (mask) {
      const shape = [...new Array<number>(4 - mask.rank).fill(1), ...mask.shape];
      [maskB, maskH] = shape;
      masks = tf.unstack(tf.reshape(mask, [maskB * maskH, shape[2], shape[3]]));
    }
    const outputs: tf.Tensor[] = [];
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kv = b * Hkv + Math.floor(h / groups);
        outputs.push(
          tf.tidy(() => {
            let scores = tf.mul(tf.matMul(qs[b * H + h], kts[kv]), scale);
            if (mask) scores = tf.add(scores, masks[(b % maskB) * maskH + (h % maskH)]);
            return tf.matMul(tf.softmax(scores, -1), vs[kv]);
          }),
        );
      }
    }
    return tf.reshape(tf.stack(outputs), [B, H, Lq, D]) as tf.Tensor4D;
  });
}

/** [B, Hkv, L, D] → [B, Hkv·n, L, D], each head repeated n times in place (torch repeat_kv order). */
export function repeatKv(x: tf.Tensor4D, n: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, L, D] = x.shape;
    return tf.reshape(tf.tile(tf.expandDims(x, 2), [1, 1, n, 1, 1]), [B, H * n, L, D]);
  });
}

/** [B, L, H·D] → [B, H, L, D] */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, L, HD] = x.shape;
    return tf.transpose(tf.reshape(x, [B, L, heads, HD / heads]), [0, 2, 1, 3]);
  });
}

/** [B, H, L, D] → [B, L, H·D] */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, H, L, D] = x.shape;
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, L, H * D]);
  });
}
