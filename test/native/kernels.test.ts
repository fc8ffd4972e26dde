// The native matMul kernels against the stock tfjs kernels they replace, on both backends.
// Not a Python parity test: the reference here is tfjs's own kernel on the same inputs.
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../../src/backend';
import { DEFAULT_MIN_MACS, disableNativeMatmul, enableNativeMatmul, nativeMatmulStatus, NATIVE_ENV } from '../../src/native';
import { loadBlas } from '../../src/native/blas';
import { relDiff } from '../helpers/compare';

// 1e-5 relative: float32 sums of up to 64 terms in a different order (OpenBLAS blocks and vectorises
// differently from XNNPACK / the JS loop); the largest difference measured here is 3e-7.
const REL_TOL = 1e-5;

const available = loadBlas().ok;

let seed = 1;
function rand(shape: number[]): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed++);
}

/** Runs f on the stock kernels, then on the native ones (every GEMM native: minMacs 0). */
function bothPaths<T>(f: () => T): { stock: T; native: T; nativeCalls: number } {
  disableNativeMatmul();
  const stock = f();
  enableNativeMatmul({ minMacs: 0 });
  const before = nativeMatmulStatus().calls.native;
  const native = f();
  const nativeCalls = nativeMatmulStatus().calls.native - before;
  return { stock, native, nativeCalls };
}

if (!available) {
  // nblas is an optional dependency; without it these tests can only check that nothing changed.
  test('without nblas the stock kernels stay registered', async () => {
    expect(process.env[NATIVE_ENV]).not.toBe('1'); // VIDEO_LLAVA_NATIVE=1 means the native path is required
    await setBackend(undefined, { native: true });
    const status = nativeMatmulStatus();
    expect(status.enabled).toBe(false);
    expect(status.path).toBe(tf.getBackend());
    expect(status.reason).toMatch(/native matmul off/);
  });
} else {
  describe.each(['wasm', 'cpu'] as const)('native matMul on %s', (backend) => {
    beforeAll(async () => {
      await setBackend(backend, { native: false });
    });
    afterAll(() => disableNativeMatmul());

    const cases: Array<[string, number[], number[], boolean, boolean]> = [
      ['plain', [5, 7], [7, 3], false, false],
      ['transposeA', [7, 5], [7, 3], true, false],
      ['transposeB (Linear: x·Wᵀ)', [5, 7], [3, 7], false, true],
      ['both transposed', [7, 5], [3, 7], true, true],
      ['rank 3 × rank 2 (folded batch)', [3, 5, 7], [7, 4], false, false],
      ['rank 3 × rank 2, transposeA', [3, 7, 5], [7, 4], true, false],
      ['rank 2 × rank 3 (A broadcast)', [5, 7], [2, 7, 4], false, false],
      ['batch 1 × batch 4, transposeB', [1, 5, 7], [4, 6, 7], false, true],
      ['rank 4 × rank 2', [2, 3, 5, 7], [7, 4], false, false],
      ['attention scores q·kᵀ [B,H,T,D]', [2, 4, 9, 8], [2, 4, 9, 8], false, true],
      ['attention probs·v', [2, 4, 9, 9], [2, 4, 9, 8], false, false],
      ['GQA grouped [B,Hkv,g·L,D]·kᵀ', [1, 2, 6, 8], [1, 2, 11, 8], false, true],
      ['1×N row', [1, 64], [64, 33], false, false],
      ['N×1 column', [33, 64], [64, 1], false, false],
      ['1×1×1', [1, 1], [1, 1], false, false],
      ['decode step [1,K]·Wᵀ', [1, 48], [40, 48], false, true],
      ['decode step, rank 3 [1,1,K]·Wᵀ', [1, 1, 48], [40, 48], false, true],
      ['row from transposed A, transposeB', [48, 1], [40, 48], true, true],
      ['column, transposeA', [64, 33], [64, 1], true, false],
      ['column from transposed B', [33, 64], [1, 64], false, true],
      ['decode attention q·kᵀ [B,H,1,D]', [1, 4, 1, 8], [1, 4, 11, 8], false, true],
      ['decode attention probs·v', [1, 4, 1, 11], [1, 4, 11, 8], false, false],
      ['empty m', [0, 7], [7, 3], false, false],
      ['empty n', [4, 7], [7, 0], false, false],
    ];

    test.each(cases)('%s: %j × %j equals the stock kernel', (_name, aShape, bShape, ta, tb) => {
      const a = rand(aShape);
      const b = rand(bShape);
      const { stock, native, nativeCalls } = bothPaths(() => tf.matMul(a, b, ta, tb));
      expect(nativeCalls).toBe(1);
      expect(native.shape).toEqual(stock.shape);
      expect(relDiff(native, stock)).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, stock, native]);
    });

    // The next cases run natively whatever their size, since the stock kernels get them wrong.
    test('an empty batch gives an empty result, where the stock kernels fail', () => {
      enableNativeMatmul({ minMacs: DEFAULT_MIN_MACS });
      const y = tf.matMul(rand([2, 0, 5, 7]), rand([7, 3]));
      expect(y.shape).toEqual([2, 0, 5, 3]);
      expect(y.size).toBe(0);
      y.dispose();
    });

    test('an inner dimension of 0 gives zeros (empty sums), where stock wasm returns stale memory', () => {
      enableNativeMatmul({ minMacs: DEFAULT_MIN_MACS });
      const y = tf.matMul(tf.zeros([4, 0]), tf.zeros([0, 3]));
      expect(y.shape).toEqual([4, 3]);
      expect(Array.from(y.dataSync())).toEqual(new Array(12).fill(0)); // exact: nothing is summed
      y.dispose();
    });

    test('batch dims that both broadcast ([2,1]×[1,3]) match explicitly tiled operands', () => {
      const a = rand([2, 1, 5, 7]);
      const b = rand([1, 3, 7, 4]);
      disableNativeMatmul();
      // The stock kernels mishandle this broadcast, so the reference tiles both sides first.
      const ref = tf.matMul(tf.tile(a, [1, 3, 1, 1]), tf.tile(b, [2, 1, 1, 1]));
      enableNativeMatmul({ minMacs: DEFAULT_MIN_MACS });
      const y = tf.matMul(a, b);
      expect(y.shape).toEqual([2, 3, 5, 4]);
      expect(relDiff(y, ref)).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, ref, y]);
    });

    test('a small fused matMul with bias over 2 matrices equals matMul + add', () => {
      const a = rand([2, 2, 3]);
      const b = rand([2, 3, 2]);
      const bias = rand([2]);
      disableNativeMatmul();
      const ref = tf.add(tf.matMul(a, b), bias);
      enableNativeMatmul({ minMacs: DEFAULT_MIN_MACS }); // 12 multiply-adds: below the threshold
      const y = tf.fused.matMul({ a, b, bias });
      expect(relDiff(y, ref)).toBeLessThanOrEqual(REL_TOL);
      // Native on wasm, whose stock kernel adds such a bias wrongly; stock (correct) on cpu.
      expect(nativeMatmulStatus().calls).toEqual(backend === 'wasm' ? { native: 1, stock: 0 } : { native: 0, stock: 1 });
      tf.dispose([a, b, bias, ref, y]);
    });

    const activations = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'] as const;
    test.each(activations)('fused matMul + bias + %s equals matMul, add and the activation op', (activation) => {
      const a = rand([2, 6, 16]);
      const b = rand([2, 16, 10]);
      const bias = rand([10]);
      const prelu = tf.mul(rand([10]), 0.3);
      // Reference: tfjs's unfused ops on the stock kernels. (Stock wasm's own _FusedMatMul adds the bias
      // wrongly once the batch is > 1: off by up to 1.0 here; tfjs 4.22.)
      disableNativeMatmul();
      const ref = tf.tidy(() => {
        const y = tf.add(tf.matMul(a, b), bias);
        const act: Record<typeof activation, () => tf.Tensor> = {
          linear: () => y,
          relu: () => tf.relu(y),
          relu6: () => tf.relu6(y),
          elu: () => tf.elu(y),
          leakyrelu: () => tf.leakyRelu(y, 0.1),
          prelu: () => tf.prelu(y, prelu),
          sigmoid: () => tf.sigmoid(y),
        };
        return act[activation]();
      });
      enableNativeMatmul({ minMacs: 0 });
      const before = nativeMatmulStatus().calls.native;
      const preluActivationWeights = activation === 'prelu' ? prelu : undefined;
      const y = tf.fused.matMul({ a, b, bias, activation, preluActivationWeights, leakyreluAlpha: 0.1 });
      expect(nativeMatmulStatus().calls.native - before).toBe(1);
      expect(relDiff(y, ref)).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, bias, prelu, ref, y]);
    });

    test('fused matMul of one row (matrix-vector) + bias + relu', () => {
      const a = rand([1, 16]);
      const b = rand([10, 16]);
      const bias = rand([10]);
      disableNativeMatmul();
      const ref = tf.relu(tf.add(tf.matMul(a, b, false, true), bias));
      enableNativeMatmul({ minMacs: 0 });
      const y = tf.fused.matMul({ a, b, transposeB: true, bias, activation: 'relu' });
      expect(nativeMatmulStatus().calls.native).toBe(1);
      expect(relDiff(y, ref)).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, bias, ref, y]);
    });

    test('fused matMul, transposed, no bias', () => {
      const a = rand([16, 6]);
      const b = rand([10, 16]);
      const { stock, native, nativeCalls } = bothPaths(() => tf.fused.matMul({ a, b, transposeA: true, transposeB: true, activation: 'relu' }));
      expect(nativeCalls).toBe(1);
      expect(relDiff(native, stock)).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, stock, native]);
    });

    test('a bias that is not a row vector goes to the stock kernel', () => {
      const a = rand([6, 16]);
      const b = rand([16, 10]);
      const bias = rand([6, 1]);
      const run = () => tf.fused.matMul({ a, b, bias });
      disableNativeMatmul();
      let stock: tf.Tensor | Error;
      try {
        stock = run();
      } catch (e) {
        stock = e as Error; // stock wasm takes rank-1 biases only
      }
      enableNativeMatmul({ minMacs: 0 });
      const before = nativeMatmulStatus().calls;
      if (stock instanceof Error) {
        expect(run).toThrow(stock.message);
      } else {
        const y = run();
        expect(relDiff(y, stock)).toBe(0); // the same stock kernel ran both times
        tf.dispose([y, stock]);
      }
      const after = nativeMatmulStatus().calls;
      expect([after.stock - before.stock, after.native - before.native]).toEqual([1, 0]);
      tf.dispose([a, b, bias]);
    });

    test('below minMacs the stock kernel runs; above it the native one', () => {
      enableNativeMatmul({ minMacs: 1024 });
      const small = [rand([4, 4]), rand([4, 4])];
      const large = [rand([16, 16]), rand([16, 16])];
      const c0 = nativeMatmulStatus().calls;
      tf.matMul(small[0], small[1]).dispose(); // 64 multiply-adds
      const c1 = nativeMatmulStatus().calls;
      tf.matMul(large[0], large[1]).dispose(); // 4096 multiply-adds
      const c2 = nativeMatmulStatus().calls;
      expect([c1.stock - c0.stock, c1.native - c0.native]).toEqual([1, 0]);
      expect([c2.stock - c1.stock, c2.native - c1.native]).toEqual([0, 1]);
      tf.dispose([...small, ...large]);
    });

    test('int32 operands go to the stock kernel', () => {
      const a = tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32');
      const b = tf.tensor2d([5, 6, 7, 8], [2, 2], 'int32');
      const run = () => Array.from(tf.matMul(a, b).dataSync());
      disableNativeMatmul();
      let stock: number[] | Error;
      try {
        stock = run();
      } catch (e) {
        stock = e as Error; // stock wasm multiplies float32 only
      }
      enableNativeMatmul({ minMacs: 0 });
      const before = nativeMatmulStatus().calls;
      if (stock instanceof Error) expect(run).toThrow(stock.message);
      else expect(run()).toEqual(stock);
      const after = nativeMatmulStatus().calls;
      expect([after.stock - before.stock, after.native - before.native]).toEqual([1, 0]);
      tf.dispose([a, b]);
    });

    test.each([
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ])('gradients through matMul (transposeA %s, transposeB %s) equal the stock ones', (ta, tb) => {
      const a = rand(ta ? [2, 12, 5] : [2, 5, 12]);
      const b = rand(tb ? [2, 9, 12] : [2, 12, 9]); // tfjs's BatchMatMul gradient does not reduce broadcast batches
      const w = rand([2, 5, 9]);
      const loss = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), w));
      const { stock, native, nativeCalls } = bothPaths(() => tf.grads(loss)([a, b]));
      expect(nativeCalls).toBeGreaterThanOrEqual(3); // forward, ∂a and ∂b all ran natively
      expect(relDiff(native[0], stock[0])).toBeLessThanOrEqual(REL_TOL);
      expect(relDiff(native[1], stock[1])).toBeLessThanOrEqual(REL_TOL);
      tf.dispose([a, b, w, ...stock, ...native]);
    });

    test('gradients through fused matMul with bias and relu equal the stock ones', () => {
      const a = rand([6, 12]);
      const b = rand([12, 9]);
      const bias = rand([9]);
      const loss = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.square(tf.fused.matMul({ a: x as tf.Tensor2D, b: y as tf.Tensor2D, bias: z, activation: 'relu' })));
      const { stock, native, nativeCalls } = bothPaths(() => tf.grads(loss)([a, b, bias]));
      expect(nativeCalls).toBeGreaterThanOrEqual(3);
      stock.forEach((g, i) => expect(relDiff(native[i], g)).toBeLessThanOrEqual(REL_TOL));
      tf.dispose([a, b, bias, ...stock, ...native]);
    });

    test('no tensors leak and stock kernels come back on disable', () => {
      disableNativeMatmul();
      const stockFunc = tf.getKernel('BatchMatMul', backend).kernelFunc;
      expect(nativeMatmulStatus().path).toBe(backend);
      const status = enableNativeMatmul({ minMacs: 0 });
      expect(status.enabled).toBe(true);
      expect(status.path).toBe('native');
      expect(tf.getKernel('BatchMatMul', backend).kernelFunc).not.toBe(stockFunc);
      enableNativeMatmul({ minMacs: 0 }); // idempotent
      const a = rand([8, 8]);
      const b = rand([8, 8]);
      const count = tf.memory().numTensors;
      tf.tidy(() => {
        tf.fused.matMul({ a, b, bias: tf.ones([8]), activation: 'relu' }).add(tf.matMul(a, b));
      });
      expect(tf.memory().numTensors).toBe(count);
      disableNativeMatmul();
      expect(tf.getKernel('BatchMatMul', backend).kernelFunc).toBe(stockFunc);
      expect(nativeMatmulStatus().path).toBe(backend);
      tf.dispose([a, b]);
    });
  });

  test('setBackend keeps the native kernels on both backends when switching', async () => {
    await setBackend('wasm', { native: true });
    expect(nativeMatmulStatus().path).toBe('native');
    await setBackend('cpu', { native: true });
    expect(nativeMatmulStatus().path).toBe('native');
    await setBackend('wasm', { native: false });
    expect(nativeMatmulStatus().path).toBe('wasm');
    expect(nativeMatmulStatus().reason).toBe('native matmul off: option native: false');
  });
}
