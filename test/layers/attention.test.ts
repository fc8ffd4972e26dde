/**
 * The head-by-head attention path (stock wasm, products ≥ 64 × 64; any backend when all heads' scores
 * would take ≥ 64 MiB): same values and gradients as the
 * batched path. Its parity with Python comes from the model fixtures whose prompts are long enough to take
 * it (asserted below), e.g. tester/batch_padded (GQA 4/2 heads, left-padded masks) and slice7b.
 */
import * as tf from '@tensorflow/tfjs';
import { HEAD_BY_HEAD_MIN_SCORE_BYTES, HEAD_BY_HEAD_MIN_SCORES, MASK_MIN, scaledDotProductAttention, useHeadByHead } from '../../src/layers/attention';
import { nativeMatmulStatus } from '../../src/native';
import { registerTrainingKernels } from '../../src/training/grad';

const stockWasm = () => tf.getBackend() === 'wasm' && nativeMatmulStatus().path !== 'native';

function random(shape: number[], seed: number): tf.Tensor4D {
  return tf.randomNormal(shape, 0, 1, 'float32', seed) as tf.Tensor as tf.Tensor4D;
}

/** Causal mask with left padding per row of the batch: [B, 1, L, L], as the Llama model builds it. */
function paddedCausalMask(B: number, L: number, pads: number[]): tf.Tensor4D {
  const data = new Float32Array(B * L * L);
  for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) data[(b * L + i) * L + j] = j > i || j < pads[b] ? MASK_MIN : 0;
  return tf.tensor4d(data, [B, 1, L, L]);
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('head-by-head attention', () => {
  test('engages on stock wasm for the parity fixtures that are long enough, never elsewhere', () => {
    const shape = (L: number) => ({ shape: [3, 4, L, 8] });
    expect(useHeadByHead(shape(88), shape(88))).toBe(stockWasm()); // tester/batch_padded
    expect(useHeadByHead(shape(146), shape(146))).toBe(stockWasm()); // */video_8
    expect(useHeadByHead(shape(12), shape(12))).toBe(false); // text_only: too small
    expect(useHeadByHead({ shape: [1, 4, 1, 8] }, shape(4096))).toBe(stockWasm()); // one query row, long cache
    expect(useHeadByHead({ shape: [1, 1, 80, 8] }, { shape: [1, 1, 80, 8] })).toBe(false); // one head: the batched call is already one product
    expect(88 * 88).toBeGreaterThanOrEqual(HEAD_BY_HEAD_MIN_SCORES);
    // on every backend when the scores of all heads would be big (a 2074-token prompt at 32 heads: 550 MB)
    expect(useHeadByHead({ shape: [1, 32, 2074, 128] }, { shape: [1, 32, 2074, 128] })).toBe(true);
    expect(4 * 32 * 2074 * 2074).toBeGreaterThanOrEqual(HEAD_BY_HEAD_MIN_SCORE_BYTES);
  });

  const cases: Array<[string, number[], number[], () => tf.Tensor | null]> = [
    ['GQA 8/2 heads, left-padded causal mask [B,1,L,L]', [2, 8, 80, 16], [2, 2, 80, 16], () => paddedCausalMask(2, 80, [0, 30])],
    ['MHA, no mask (vision tower)', [2, 4, 70, 16], [2, 4, 70, 16], () => null],
    ['mask [1,1,Lq,Lk] over a longer key range (cached prefix)', [1, 4, 64, 8], [1, 4, 96, 8], () => tf.tidy(() => tf.mul(tf.randomUniform([1, 1, 64, 96], 0, 1, 'float32', 3).greater(0.7).cast('float32'), MASK_MIN))],
    ['rank-2 mask and a fully masked row (uniform, as eager torch)', [1, 2, 64, 8], [1, 2, 64, 8], () => tf.tidy(() => tf.concat([tf.fill([1, 64], MASK_MIN), tf.zeros([63, 64])]))],
  ];

  test.each(cases)('same output as the batched path: %s', (_, qShape, kShape, makeMask) => {
    const q = random(qShape, 1);
    const k = random(kShape, 2);
    const v = random(kShape, 3);
    const mask = makeMask();
    const before = tf.memory().numTensors;
    const fast = scaledDotProductAttention(q, k, v, 0.25, mask).output;
    const batched = scaledDotProductAttention(q, k, v, 0.25, mask, true); // asking for probs takes the batched path
    expect(fast.shape).toEqual(qShape);
    // same float32 math; only the matmul kernels' summation order differs (outputs O(1))
    expect(maxDiff(fast, batched.output)).toBeLessThan(1e-5);
    tf.dispose([fast, batched.output, batched.probs!]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, v, mask].filter((t): t is tf.Tensor => t !== null));
  });

  test('same gradients as the batched path (training on wasm goes through it)', () => {
    registerTrainingKernels(); // the batched path's GQA repeat needs the rank-5 Tile gradient
    const [q, k, v] = [random([2, 4, 72, 8], 4), random([2, 2, 72, 8], 5), random([2, 2, 72, 8], 6)];
    const mask = paddedCausalMask(2, 72, [5, 0]);
    const w = random([2, 4, 72, 8], 7);
    const grads = (batched: boolean) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const r = scaledDotProductAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, 0.3, mask, batched);
        if (r.probs) r.probs.dispose();
        return tf.sum(tf.mul(r.output, w));
      })([q, k, v]);
    const fast = grads(false);
    const slow = grads(true);
    fast.forEach((g, i) => expect(maxDiff(g, slow[i])).toBeLessThan(1e-4)); // gradients O(1–10)
    tf.dispose([...fast, ...slow, q, k, v, mask, w]);
  });
});
