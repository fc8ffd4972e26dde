/**
 * KV caches: block bookkeeping, blockwise attention against the one-block path, and the end-to-end
 * property that decoding with the cache gives the logits of re-running the whole sequence without one.
 *
 * Tolerances: blockAttention vs scaledDotProductAttention 1e-6 (same float32 dot products for the scores;
 * only the order of summing probability·value over blocks differs, values O(1)). Cached vs full recompute
 * 1e-5 on logits of size O(1–10): the full forward multiplies [L, T] score matrices where a decode step
 * multiplies [1, T] blocks, so only the float32 accumulation order differs.
 */
import * as tf from '@tensorflow/tfjs';
import { BlockKVCache, DynamicCache, blockAttention } from '../../src/generation/cache';
import { generate, positionsFromMask } from '../../src/generation/generate';
import { MASK_MIN, scaledDotProductAttention } from '../../src/layers/attention';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { diff, modelDir, openCase } from '../helpers/fixtures';

const ATTN_TOL = 1e-6; // see header
const RECOMPUTE_TOL = 1e-5; // see header

function randomKv(B: number, H: number, T: number, D: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([B, H, T, D], 0, 1, 'float32', seed) as tf.Tensor4D;
}

describe('BlockKVCache', () => {
  test('the open block never exceeds blockSize positions; frozen blocks are not copied again', () => {
    const before = tf.memory().numTensors;
    const cache = new BlockKVCache(4);
    const prefill = randomKv(1, 2, 6, 8, 1);
    const first = cache.update(0, prefill, prefill);
    cache.commit(6);
    expect(first.keys.map((k) => k.shape[2])).toEqual([6]); // a long prefill is frozen as one block
    const frozen = first.keys[0];
    for (let step = 0; step < 9; step++) {
      const x = randomKv(1, 2, 1, 8, 10 + step);
      const blocks = cache.update(0, x, x);
      cache.commit(1);
      x.dispose();
      expect(blocks.keys[0]).toBe(frozen); // the same tensor, not a copy
      expect(blocks.keys.slice(1).every((k) => k.shape[2] <= 4)).toBe(true);
      expect(blocks.keys.reduce((n, k) => n + k.shape[2], 0)).toBe(7 + step);
    }
    expect(cache.length).toBe(15);
    expect(cache.blockCount(0)).toBe(4); // [6] [4] [4] [1]
    prefill.dispose();
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('DynamicCache keeps one concatenated block', () => {
    const before = tf.memory().numTensors;
    const cache = new DynamicCache();
    const a = randomKv(1, 2, 3, 4, 1);
    const b = randomKv(1, 2, 1, 4, 2);
    cache.update(0, a, a);
    const blocks = cache.update(0, b, b);
    expect(blocks.keys.map((k) => k.shape)).toEqual([[1, 2, 4, 4]]);
    tf.dispose([a, b]);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('a bad block size is an InputError', () => {
    expect(() => new BlockKVCache(0)).toThrow(expect.objectContaining({ name: 'InputError', argument: 'blockSize' }));
  });
});

describe('blockAttention', () => {
  test.each([
    [1, 'one query (decode step)'],
    [3, 'three queries'],
  ])('equals attention over the joined keys/values, GQA 4/2, masked: L = %i (%s)', (L) => {
    const before = tf.memory().numTensors;
    const [B, H, Hkv, D] = [2, 4, 2, 8];
    const sizes = [5, 3, 4];
    const T = 12;
    const q = randomKv(B, H, L, D, 3);
    const keys = sizes.map((t, i) => randomKv(B, Hkv, t, D, 10 + i));
    const values = sizes.map((t, i) => randomKv(B, Hkv, t, D, 20 + i));
    const maskData = Array.from({ length: B * L * T }, (_, i) => (i % 7 === 2 ? MASK_MIN : 0));
    const mask = tf.tensor4d(maskData, [B, 1, L, T]);
    const k = tf.concat(keys, 2) as tf.Tensor4D;
    const v = tf.concat(values, 2) as tf.Tensor4D;
    const ref = scaledDotProductAttention(q, k, v, D ** -0.5, mask, true);
    const got = blockAttention(q, { keys, values }, D ** -0.5, mask, true);
    expect(diff(got.output, ref.output).abs).toBeLessThanOrEqual(ATTN_TOL);
    expect(diff(got.probs!, ref.probs!).abs).toBeLessThanOrEqual(ATTN_TOL);
    tf.dispose([q, ...keys, ...values, mask, k, v, ref.output, ref.probs!, got.output, got.probs!]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('cached decoding equals full recomputation', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('tester'));
  });
  afterAll(() => model?.dispose());

  test('tester batch_padded (left padding, image + video rows, GQA), blocks of 4, 12 tokens', async () => {
    const f = await openCase('tester', 'batch_padded');
    const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
    const vid = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
    const ids = await f.rows('input_ids');
    const mask = await f.rows('attention_mask');
    await f.close();
    const inputs = { inputIds: ids, attentionMask: mask, pixelValuesImages: img, pixelValuesVideos: vid };
    const result = await generate(model, inputs, { maxNewTokens: 12, eosTokenId: null, outputLogits: true, cacheBlockSize: 4 });
    let worst = 0;
    for (let s = 1; s < 12; s++) {
      const seqIds = ids.map((row, b) => [...row, ...result.newTokens[b].slice(0, s)]);
      const seqMask = mask.map((row) => [...row, ...new Array<number>(s).fill(1)]);
      const out = model.forward({ ...inputs, inputIds: seqIds, attentionMask: seqMask, positionIds: positionsFromMask(seqMask), logitsToKeep: 1 });
      const [B, , V] = out.logits.shape;
      const cached = tf.tensor3d(Float32Array.from(result.logits![s].flatMap((r) => Array.from(r))), [B, 1, V]);
      worst = Math.max(worst, diff(cached, out.logits).abs);
      tf.dispose([cached, out.logits]);
    }
    tf.dispose([img, vid]);
    expect(worst).toBeLessThanOrEqual(RECOMPUTE_TOL);
  });
});
