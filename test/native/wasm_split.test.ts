/**
 * The K-split BatchMatMul for stock wasm (src/native/wasm_split.ts): same products as tfjs-backend-wasm's
 * own kernel, aliases released with their tensor, everything it does not cover handed to the stock kernel.
 * Parity with Python on the shapes it takes comes from test/models/slice7b.parity.test.ts (K = 4096, 11008).
 */
import * as tf from '@tensorflow/tfjs';
import { SPLIT_MIN_K, SPLIT_MIN_N, installWasmSplitMatmul, wasmSplitSettings, uninstallWasmSplitMatmul, wasmSplitMatmulCalls } from '../../src/native/wasm_split';
import { nativeMatmulStatus } from '../../src/native';

// Runs in the stock-wasm pass of the suite (the default); skipped, and reported so, on cpu and native runs.
const stockWasmRun = (process.env.VIDEO_LLAVA_BACKEND ?? 'wasm') === 'wasm' && process.env.VIDEO_LLAVA_NATIVE !== '1';

function both(f: () => tf.Tensor): { stock: Float32Array; split: Float32Array; took: number; transposed: number } {
  uninstallWasmSplitMatmul();
  const r0 = f();
  const stock = r0.dataSync() as Float32Array;
  const stockShape = r0.shape;
  r0.dispose();
  installWasmSplitMatmul();
  const before = wasmSplitMatmulCalls()!;
  const r1 = f();
  const split = r1.dataSync() as Float32Array;
  expect(r1.shape).toEqual(stockShape); // the stock kernel's output shape, leading batch dimensions included
  r1.dispose();
  const after = wasmSplitMatmulCalls()!;
  return { stock, split, took: after.split - before.split, transposed: after.transposed - before.transposed };
}

function maxRel(x: Float32Array, ref: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(x[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / m;
}

(stockWasmRun ? describe : describe.skip)('K-split matmul on stock wasm', () => {
  test('is installed by setBackend on wasm', () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(nativeMatmulStatus().path).toBe('wasm');
    expect(wasmSplitMatmulCalls()).not.toBeNull();
    // uninstall puts the backend's own disposeData back (installs do not stack wrappers on it)
    const disposeOf = () => (tf.backend() as unknown as { disposeData: unknown }).disposeData;
    uninstallWasmSplitMatmul();
    const own = disposeOf();
    installWasmSplitMatmul();
    expect(disposeOf()).not.toBe(own);
    uninstallWasmSplitMatmul();
    expect(disposeOf()).toBe(own);
    installWasmSplitMatmul();
  });

  const cases: Array<[string, number[], number[]]> = [
    ['x·W at K = 4096 (Llama projections)', [5, 4096], [4096, 600]],
    ['K not a multiple of the block (11008, down_proj)', [3, 11008], [11008, 512]],
    ['batched left operand, unbatched weight', [2, 3, 2048], [2048, 520]],
    ['a weight with a leading 1', [4, 2560], [1, 2560, 512]],
  ];
  test.each(cases)('same values as the stock kernel: %s', (_, aShape, bShape) => {
    const a = tf.randomNormal(aShape, 0, 1, 'float32', 1);
    const b = tf.randomNormal(bShape, 0, 1, 'float32', 2);
    const r = both(() => tf.matMul(a, b));
    expect(r.took).toBe(1);
    expect(r.split.length).toBe(r.stock.length);
    expect(maxRel(r.split, r.stock)).toBeLessThan(1e-5); // float32 summation order only (blocks of 512)
    tf.dispose([a, b]);
  });

  test('rows in blocks when the partial products would exceed the scratch size (the heap-ceiling case)', () => {
    const saved = wasmSplitSettings.scratchBytes;
    wasmSplitSettings.scratchBytes = 4 * 512 * 7; // 7 rows of N = 512 per block: 3 blocks of 7 and one of 2
    try {
      const a = tf.randomNormal([23, 2600], 0, 1, 'float32', 5);
      const b = tf.randomNormal([2600, 512], 0, 1, 'float32', 6);
      const r = both(() => tf.matMul(a, b));
      expect(r.took).toBe(1);
      expect(maxRel(r.split, r.stock)).toBeLessThan(1e-5);
      tf.dispose([a, b]);
    } finally {
      wasmSplitSettings.scratchBytes = saved;
    }
  });

  test('hands transposed, batched-weight, short-K and narrow products to the stock kernel', () => {
    installWasmSplitMatmul();
    const a = tf.randomNormal([4, SPLIT_MIN_K]);
    const w = tf.randomNormal([SPLIT_MIN_K, SPLIT_MIN_N]);
    const wt = tf.randomNormal([SPLIT_MIN_N, SPLIT_MIN_K]);
    const wb = tf.randomNormal([2, SPLIT_MIN_K, SPLIT_MIN_N]);
    const short = tf.randomNormal([SPLIT_MIN_K - 1, SPLIT_MIN_N]);
    const narrow = tf.randomNormal([SPLIT_MIN_K, SPLIT_MIN_N - 1]); // e.g. attention's probs·v per head
    const tiny = tf.randomNormal([8, 8]);
    const before = wasmSplitMatmulCalls()!;
    tf.dispose([tf.matMul(tiny, tiny, false, true), tf.matMul(tf.stack([a, a]), wb), tf.matMul(tf.slice(a, [0, 1]), short), tf.matMul(a, narrow)]);
    const after = wasmSplitMatmulCalls()!;
    expect(after.split - before.split).toBe(0);
    expect(after.transposed - before.transposed).toBe(0); // 8·8·8 multiply-adds: not worth a copy
    expect(after.stock - before.stock).toBe(4);
    tiny.dispose();
    tf.dispose([tf.matMul(a, w)]);
    expect(wasmSplitMatmulCalls()!.split - after.split).toBe(1);
    tf.dispose([a, w, wt, wb, short]);
  });

  test('no leak: tensors and wasm heap stay flat over fresh weights; variables re-split after assign', () => {
    installWasmSplitMatmul();
    const heap = () => ((tf.backend() as unknown as { wasm: { HEAP8: Int8Array } }).wasm.HEAP8.length);
    const x = tf.randomNormal([2, 4096]);
    const step = () => tf.tidy(() => void tf.matMul(x, tf.fill([4096, SPLIT_MIN_N], Math.random())).dataSync());
    step();
    const tensors = tf.memory().numTensors;
    const bytes = heap();
    for (let i = 0; i < 20; i++) step(); // 20 fresh 8 MiB weights, each split and packed once, then freed
    expect(tf.memory().numTensors).toBe(tensors);
    expect(heap()).toBe(bytes);
    const v = tf.variable(tf.ones([4096, SPLIT_MIN_N]));
    const sum = () => tf.tidy(() => [...new Set(tf.matMul(tf.ones([1, 4096]), v).dataSync())]);
    expect(sum()).toEqual([4096]);
    v.assign(tf.fill([4096, SPLIT_MIN_N], 2)); // a new buffer: its blocks must be the new values, not a stale packing
    expect(sum()).toEqual([8192]);
    v.dispose();
    x.dispose();
  });

  const transposedCases: Array<[string, number[], number[], boolean, boolean]> = [
    ['dy·Wᵀ (a Linear\'s input gradient)', [40, 96], [64, 96], false, true],
    ['xᵀ·dy (a Linear\'s weight gradient)', [40, 64], [40, 96], true, false],
    ['both transposed', [64, 40], [96, 64], true, true],
    ['transposed into a split (K = 2048, N = 512)', [6, 2048], [512, 2048], false, true],
    ['a transposed left operand with a leading 1', [1, 64, 40], [64, 96], true, false],
  ];
  test.each(transposedCases)('transposed operands laid out plainly, same values: %s', (_, aShape, bShape, ta, tb) => {
    const a = tf.randomNormal(aShape, 0, 1, 'float32', 7);
    const b = tf.randomNormal(bShape, 0, 1, 'float32', 8);
    const r = both(() => tf.matMul(a, b, ta, tb));
    expect(r.transposed).toBe(1);
    expect(maxRel(r.split, r.stock)).toBeLessThan(1e-5);
    tf.dispose([a, b]);
  });

  test('gradients through it match the stock kernel', () => {
    const w = tf.randomNormal([2048, SPLIT_MIN_N], 0, 1, 'float32', 3);
    const x = tf.randomNormal([3, 2048], 0, 1, 'float32', 4);
    const grad = () => tf.grads((xx: tf.Tensor) => tf.sum(tf.square(tf.matMul(xx, w))))([x])[0];
    const r = both(grad);
    expect(maxRel(r.split, r.stock)).toBeLessThan(1e-5);
    tf.dispose([w, x]);
  });
});
