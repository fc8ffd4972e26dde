/**
 * Weights kept as stored (bfloat16 / float16 outside the tensor heap) and the native addon's products with them:
 * every kernel family this CPU has (AMX, AVX-512) against the portable C path, the portable path against an exact
 * float64 reference, the tfjs op (storedMatMul) against tf.matMul on the widened weight, its gradient, leaks, and
 * the fallback without the addon (stored_fallback.test.ts runs the same op with the addon off).
 */
import * as tf from '@tensorflow/tfjs';
import { InputError, WeightsError } from '../../src/errors';
import { Linear } from '../../src/layers/linear';
import { ISAS, Isa, NativeAddon, nativeAddon } from '../../src/native/addon';
import { storedMatMul } from '../../src/native/stored_matmul';
import { HalfDType, HalfWeight } from '../../src/weights/stored';

const addon = nativeAddon();
const describeAddon = addon ? describe : describe.skip;

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function weight(format: HalfDType, rows: number, cols: number, seed = 7): HalfWeight {
  return HalfWeight.fromFloat32(values(rows * cols, seed), [rows, cols], format);
}

/** x·Wᵀ (or x·W) in float64 on the widened weight: exact but for the final rounding. */
function reference(x: Float32Array, m: number, w: HalfWeight, transposed: boolean): Float64Array {
  const W = w.widenRows(0, w.rows);
  const [inner, outer] = transposed ? [w.rows, w.cols] : [w.cols, w.rows];
  const out = new Float64Array(m * outer);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < outer; j++) {
      let s = 0;
      for (let k = 0; k < inner; k++) s += x[i * inner + k] * (transposed ? W[k * w.cols + j] : W[j * w.cols + k]);
      out[i * outer + j] = s;
    }
  return out;
}

/** Largest |a − b| relative to the largest |b| (products of K terms round at ~K·2^-24 of the row's scale). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let scale = 1e-30;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return d / scale;
}

function runIsa(a: NativeAddon, isa: Isa, fn: () => void): void {
  const before = a.features().isa;
  a.setIsa(isa);
  try {
    fn();
  } finally {
    a.setIsa(before);
  }
}

// Shapes that reach every kernel regime and edge: decode rows (1–4), tails of the 12×32 micro-kernel and of the
// AMX 32×32 blocks, K not a multiple of 16 or 32 (AMX then declines), sizes where threads split the columns, and a
// K over the AMX k-block (512: accumulators carried across blocks, a partial last block).
const SHAPES: Array<[number, number, number]> = [
  [1, 37, 70],
  [2, 64, 96],
  [4, 33, 128],
  [5, 70, 100],
  [13, 45, 64],
  [16, 96, 64],
  [33, 100, 96],
  [40, 300, 320],
  [70, 513, 256],
  [37, 50, 608],
];

describeAddon('native products with stored weights', () => {
  const a = addon as NativeAddon;
  const isas = ISAS.slice(0, ISAS.indexOf(a.features().bestIsa) + 1);

  test('the CPU features and the kernel families in use are reported', () => {
    const f = a.features();
    expect(f.cores).toBeGreaterThan(0);
    expect(f.threads).toBeGreaterThan(0);
    expect(ISAS).toContain(f.isa);
    if (f.amx) expect(f.bestIsa).toBe('amx');
    else if (f.avx512) expect(f.bestIsa).toBe('avx512');
    else if (f.avx2) expect(f.bestIsa).toBe('avx2');
    console.log(`addon: ${JSON.stringify(f)}; kernel families tested: ${isas.join(', ')}`);
  });

  test.each(['bfloat16', 'float16'] as const)('portable path = float64 reference (%s, both directions)', (format) => {
    runIsa(a, 'portable', () => {
      for (const [m, n, k] of SHAPES) {
        for (const transposed of [false, true]) {
          const w = weight(format, n, k);
          const inner = transposed ? n : k;
          const outer = transposed ? k : n;
          const x = values(m * inner, m + n);
          const c = new Float32Array(m * outer);
          w.nativeProduct(a, x, m, c, transposed);
          // float32 accumulation over ≤ 513 terms of |x·w| ≤ 1: well inside 1e-5 of the row scale
          expect(relDiff(c, reference(x, m, w, transposed))).toBeLessThan(1e-5);
        }
      }
    });
  });

  test.each(['bfloat16', 'float16'] as const)('every vectorised family = the portable path (%s)', (format) => {
    for (const isa of isas.filter((i) => i !== 'portable')) {
      for (const [m, n, k] of SHAPES) {
        for (const transposed of [false, true]) {
          for (const compute of ['float32', 'bfloat16'] as const) {
            const w = weight(format === 'float16' && compute === 'bfloat16' ? 'bfloat16' : format, n, k);
            w.compute = compute;
            const inner = transposed ? n : k;
            const outer = transposed ? k : n;
            const x = values(m * inner, 3 * m + n);
            const ours = new Float32Array(m * outer);
            const portable = new Float32Array(m * outer);
            runIsa(a, isa, () => w.nativeProduct(a, x, m, ours, transposed));
            runIsa(a, 'portable', () => w.nativeProduct(a, x, m, portable, transposed));
            // Same exact products, other summation orders: float32 rounding only (bfloat16 compute rounds x the
            // same way on every path, so it is compared the same way)
            const d = relDiff(ours, portable);
            if (d >= 1e-5) throw new Error(`${isa} ${format} compute=${compute} [${m},${n},${k}] transposed=${transposed}: ${d}`);
          }
        }
      }
    }
  });

  test('bfloat16 compute rounds the activations to bfloat16 (what torch_dtype=bfloat16 does), float32 compute does not', () => {
    const w = weight('bfloat16', 64, 96);
    const x = values(3 * 96, 11);
    const rounded = HalfWeight.fromFloat32(x, [3, 96], 'bfloat16').widenRows(0, 3);
    for (const isa of isas) {
      runIsa(a, isa, () => {
        for (const m of [3, 40]) {
          const xm = new Float32Array(m * 96).map((_, i) => x[i % x.length]);
          const xr = new Float32Array(m * 96).map((_, i) => rounded[i % rounded.length]);
          const f32 = new Float32Array(m * 64);
          const bf16 = new Float32Array(m * 64);
          w.compute = 'float32';
          w.nativeProduct(a, xm, m, f32, false);
          w.compute = 'bfloat16';
          w.nativeProduct(a, xm, m, bf16, false);
          expect(relDiff(f32, reference(xm, m, w, false))).toBeLessThan(1e-5);
          expect(relDiff(bf16, reference(xr, m, w, false))).toBeLessThan(1e-5);
          expect(relDiff(bf16, f32)).toBeGreaterThan(1e-4); // the rounding is visible
        }
      });
    }
  });

  test('arguments the addon cannot serve are refused, never read out of bounds', () => {
    const w = weight('bfloat16', 8, 16);
    expect(() => a.gemm(2, 8, 16, new Float32Array(31), 16, false, 1, w.data, 16, true, new Float32Array(16), 8, 0, 0)).toThrow(/shorter/);
    expect(() => a.gemm(2, 8, 16, new Float32Array(32), 16, false, 1, w.data.subarray(1), 16, true, new Float32Array(16), 8, 0, 0)).toThrow(/shorter/);
    expect(() => a.gemm(2, 8, 16, new Float32Array(32), 8, false, 1, w.data, 16, true, new Float32Array(16), 8, 0, 0)).toThrow(/leading dimension/);
    expect(() => a.gemm(2, 8, 16, new Float32Array(32), 16, false, 9, w.data, 16, true, new Float32Array(16), 8, 0, 0)).toThrow(/format/);
    expect(() => a.setIsa('sse' as Isa)).toThrow(/portable/);
  });
});

describe('storedMatMul (the tfjs op)', () => {
  test.each(['bfloat16', 'float16'] as const)('equals tf.matMul on the widened weight, both directions (%s)', (format) => {
    for (const [m, n, k] of [[1, 40, 24], [3, 33, 64], [20, 70, 48]]) {
      const w = weight(format, n, k);
      const W = tf.tensor2d(w.widenRows(0, n), [n, k]);
      const x = tf.tensor2d(values(m * k, m), [m, k]);
      const dy = tf.tensor2d(values(m * n, m + 1), [m, n]);
      const pairs: Array<[tf.Tensor, tf.Tensor]> = [
        [storedMatMul(x, w), tf.matMul(x, W, false, true)],
        [storedMatMul(dy, w, true), tf.matMul(dy, W)],
      ];
      // float32 both sides, summed in other orders
      for (const [ours, theirs] of pairs) expect(relDiff(ours.dataSync(), theirs.dataSync())).toBeLessThan(1e-5);
      tf.dispose([W, x, dy, ...pairs.flat()]);
      w.dispose();
    }
  });

  test('gradient with respect to x equals the float32 weight\'s; the stored weight gets none', () => {
    const w = weight('bfloat16', 30, 20);
    const W = tf.tensor2d(w.widenRows(0, 30), [30, 20]);
    const x = tf.tensor2d(values(5 * 20, 9), [5, 20]);
    const f = (fn: (x: tf.Tensor) => tf.Tensor) => tf.grad((v: tf.Tensor) => tf.sum(tf.square(fn(v))))(x);
    const ours = f((v) => storedMatMul(v as tf.Tensor2D, w));
    const theirs = f((v) => tf.matMul(v, W, false, true));
    expect(relDiff(ours.dataSync(), theirs.dataSync())).toBeLessThan(1e-5);
    tf.dispose([W, x, ours, theirs]);
    w.dispose();
  });

  test('a Linear with a stored weight: same output as with the float32 weight, no tensor left behind', () => {
    const lin = new Linear(48, 40);
    const w = weight('bfloat16', 40, 48);
    lin.weight.setStored(w, 'lin.weight');
    lin.bias!.set(tf.tensor1d(values(40, 5)));
    const ref = new Linear(48, 40);
    ref.weight.set(tf.tensor2d(w.widenRows(0, 40), [40, 48]));
    ref.bias!.set(tf.tensor1d(values(40, 5)));
    const x = tf.tensor3d(values(2 * 3 * 48, 4), [2, 3, 48]);
    const warm = lin.call(x);
    warm.dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) tf.dispose(lin.call(x));
    expect(tf.memory().numTensors).toBe(before);
    const [ours, theirs] = [lin.call(x), ref.call(x)];
    expect(ours.shape).toEqual([2, 3, 40]);
    expect(relDiff(ours.dataSync(), theirs.dataSync())).toBeLessThan(1e-5);
    tf.dispose([x, ours, theirs]);
    lin.dispose();
    ref.dispose();
    expect(w.disposed).toBe(true);
  });

  test('a stored weight is frozen, has no float32 tensor, and refuses wrong shapes by name', () => {
    const lin = new Linear(16, 8);
    lin.weight.setStored(weight('float16', 8, 16), 'q_proj.weight');
    expect(lin.weight.trainable).toBe(false);
    expect(() => (lin.weight.trainable = true)).toThrow(WeightsError);
    expect(() => lin.weight.value).toThrow(/float16 outside the tensor heap/);
    expect(() => lin.weight.setStored(weight('float16', 16, 8), 'q_proj.weight')).toThrow(/q_proj\.weight: expected shape \[8, 16\], found \[16, 8\]/);
    const x = tf.ones([3, 15]) as tf.Tensor2D;
    expect(() => storedMatMul(x, lin.weight.stored!)).toThrow(InputError);
    const cv = lin.weight.checkpointValue();
    expect(cv.shape).toEqual([8, 16]);
    tf.dispose([x, cv]);
    lin.dispose();
  });
});
