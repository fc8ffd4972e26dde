// The fused attention kernel of the addon against the op-by-op tfjs path it replaces, on both backends.
// Not a Python parity test (the model parity tests run through it against Python's values): the reference here
// is the unfused computation on the same inputs.
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../../src/backend';
import { BlockKVCache, blockAttention } from '../../src/generation/cache';
import { MASK_MIN, scaledDotProductAttention } from '../../src/layers/attention';
import { NativeAddon, nativeAddon } from '../../src/native/addon';
import { FUSED_ATTENTION_ENV, fusedAttention } from '../../src/native/attention';
import { platform } from '../../src/platform';
import { relDiff } from '../helpers/compare';

const addon = nativeAddon();
const isa = addon?.features().isa;
const describeFused = isa === 'avx512' || isa === 'amx' ? describe : describe.skip;

// 2e-6 relative to the largest output: float32 sums of up to a few hundred terms in another order, and exp by a
// polynomial (≤ 2 ulp) instead of the backend's; the largest difference measured here is 6.2e-7.
const REL_TOL = 2e-6;

let seed = 11;
const rand = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++) as unknown as tf.Tensor4D;

/** Runs f unfused (the environment switch), then fused, counting the addon's attention calls in the fused run. */
function bothPaths(f: () => tf.Tensor): { unfused: tf.Tensor; fused: tf.Tensor; calls: number } {
  process.env[FUSED_ATTENTION_ENV] = '0';
  let unfused: tf.Tensor;
  try {
    unfused = f();
  } finally {
    delete process.env[FUSED_ATTENTION_ENV];
  }
  // the addon's exports are read-only: count through a wrapper handed out by the platform
  let calls = 0;
  const counting = Object.create(addon!) as NativeAddon;
  Object.defineProperty(counting, 'attention', {
    value: (...args: Parameters<NativeAddon['attention']>) => {
      calls++;
      return addon!.attention(...args);
    },
  });
  const spy = jest.spyOn(platform, 'nativeAddon').mockReturnValue(counting);
  try {
    const fused = f();
    return { unfused, fused, calls };
  } finally {
    spy.mockRestore();
  }
}

/** Causal additive mask [B, 1, L, past + L] with `pad[b]` left-padded keys, as causalMask builds it. */
function causal(B: number, L: number, past: number, pad: number[]): tf.Tensor4D {
  const T = past + L;
  const m = new Float32Array(B * L * T);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < L; i++)
      for (let j = 0; j < T; j++) m[(b * L + i) * T + j] = j <= past + i && j >= pad[b] ? 0 : MASK_MIN;
  return tf.tensor4d(m, [B, 1, L, T]);
}

describeFused.each(['wasm', 'cpu'])('fused attention on %s', (backend) => {
  beforeAll(async () => {
    await setBackend(backend as 'wasm' | 'cpu');
  });

  test.each([
    // [B, H, Hkv, Lq, Lk, D, mask]
    [1, 4, 4, 70, 70, 64, 'causal'],
    [2, 4, 2, 9, 9, 128, 'causal, padded'],
    [2, 4, 4, 257, 257, 64, 'none'], // CLIP-L's towers: 257 tokens, heads of 64
    [1, 4, 4, 130, 130, 32, 'none'],
    [2, 2, 1, 1, 33, 16, 'causal, padded'], // a decode step
    [1, 2, 2, 3, 3, 128, 'fully masked row'],
  ] as const)('B=%i H=%i Hkv=%i Lq=%i Lk=%i D=%i mask=%s: equals the unfused ops', (B, H, Hkv, Lq, Lk, D, kind) => {
    const q = rand([B, H, Lq, D]);
    const k = rand([B, Hkv, Lk, D]);
    const v = rand([B, Hkv, Lk, D]);
    let mask: tf.Tensor4D | null = null;
    if (kind.startsWith('causal')) mask = causal(B, Lq, Lk - Lq, kind.includes('padded') ? Array.from({ length: B }, (_, b) => b * 3) : new Array<number>(B).fill(0));
    if (kind === 'fully masked row') mask = tf.tensor4d([0, MASK_MIN, MASK_MIN, MASK_MIN, MASK_MIN, MASK_MIN, 0, 0, MASK_MIN], [1, 1, 3, 3]);
    const scale = 1 / Math.sqrt(D);
    const { unfused, fused, calls } = bothPaths(() => scaledDotProductAttention(q, k, v, scale, mask).output);
    expect(calls).toBe(1);
    expect(relDiff(fused, unfused)).toBeLessThan(REL_TOL);
    tf.dispose([q, k, v, mask!, unfused, fused].filter(Boolean));
  });

  test('KV cache blocks are read where they lie: a prefill then decode steps equal the unfused blocks', () => {
    const [B, H, D] = [1, 4, 64];
    const cache = new BlockKVCache(4);
    const parts: tf.Tensor4D[] = [];
    const kProj = (L: number) => rand([B, H, L, D]);
    let past = 0;
    for (const L of [6, 1, 1, 1, 3]) {
      const q = rand([B, H, L, D]);
      const blocks = cache.update(0, kProj(L), kProj(L));
      cache.commit(L);
      const mask = causal(B, L, past, [0]);
      const { unfused, fused, calls } = bothPaths(() => blockAttention(q, blocks, 0.125, mask).output);
      expect(calls).toBe(1);
      expect(relDiff(fused, unfused)).toBeLessThan(REL_TOL);
      parts.push(q, mask, unfused as tf.Tensor4D, fused as tf.Tensor4D);
      past += L;
    }
    expect(cache.blockCount(0)).toBeGreaterThan(1);
    tf.dispose(parts);
    cache.dispose();
  });

  test('while gradients are recorded the op-by-op path runs, and its gradients are the unfused ones', () => {
    const q = rand([1, 2, 5, 16]);
    const k = rand([1, 2, 5, 16]);
    const v = rand([1, 2, 5, 16]);
    const f = (x: tf.Tensor) => tf.sum(tf.square(scaledDotProductAttention(x as tf.Tensor4D, k, v, 0.25, null).output));
    const fused = tf.grad(f)(q);
    process.env[FUSED_ATTENTION_ENV] = '0';
    const unfused = tf.grad(f)(q);
    delete process.env[FUSED_ATTENTION_ENV];
    expect(relDiff(fused, unfused)).toBe(0);
    tf.dispose([q, k, v, fused, unfused]);
  });

  test('declines what it does not serve: a head size that is not a multiple of 16, a mask broadcast along keys', () => {
    const q = rand([1, 2, 4, 40]);
    const k = rand([1, 2, 4, 40]);
    expect(fusedAttention(q, [k], [k], 0.1, null)).toBeNull();
    const q16 = rand([1, 2, 4, 16]);
    const k16 = rand([1, 2, 4, 16]);
    const mask = tf.zeros([1, 1, 4, 1]);
    expect(fusedAttention(q16, [k16], [k16], 0.1, mask)).toBeNull();
    tf.dispose([q, k, q16, k16, mask]);
  });

  test('keeps no tensor beyond its output', () => {
    const q = rand([1, 4, 20, 64]);
    const k = rand([1, 4, 20, 64]);
    const before = tf.memory().numTensors;
    const out = fusedAttention(q, [k], [k], 0.125, null)!;
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([q, k, out]);
  });
});
