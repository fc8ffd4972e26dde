import * as tf from '@tensorflow/tfjs';

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
