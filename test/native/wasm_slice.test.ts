/**
 * Slice, Unpack and SplitV on stock wasm without whole-input copies (src/native/wasm_slice.ts): every piece equal
 * to tfjs-backend-wasm's own kernels, bit for bit, over ranks 1–5, contiguous and strided regions, every axis, and
 * the float32, int32 and bool dtypes; gradients unchanged; no tensor left behind.
 */
import * as tf from '@tensorflow/tfjs';
import { installWasmSlices, uninstallWasmSlices } from '../../src/native/wasm_slice';

// The kernels belong to the wasm backend: run in the wasm passes of the suite, skipped (and reported so) on cpu.
const wasmRun = (process.env.VIDEO_LLAVA_BACKEND ?? 'wasm') === 'wasm';

/** Runs f with the stock kernels, then with ours; returns both results' values and shapes. */
function both(f: () => tf.Tensor | tf.Tensor[]): { stock: { shape: number[]; values: number[] }[]; ours: { shape: number[]; values: number[] }[] } {
  const run = () =>
    tf.tidy(() => {
      const r = f();
      return (Array.isArray(r) ? r : [r]).map((t) => ({ shape: t.shape, values: Array.from(t.dataSync()) }));
    });
  uninstallWasmSlices();
  const stock = run();
  installWasmSlices();
  const ours = run();
  return { stock, ours };
}

function input(shape: number[], dtype: 'float32' | 'int32' | 'bool', seed: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: n }, (_, i) => ((i * 7919 + seed * 104729) % 1009) - 504);
  if (dtype === 'bool') return tf.tensor(values.map((v) => v > 0), shape, 'bool');
  return tf.tensor(dtype === 'int32' ? values : values.map((v) => v / 37), shape, dtype);
}

(wasmRun ? describe : describe.skip)('wasm Slice / Unpack / SplitV without whole-input copies', () => {
  const shapes = [[11], [5, 7], [3, 4, 6], [2, 3, 4, 5], [2, 2, 3, 2, 4]];
  const dtypes = ['float32', 'int32', 'bool'] as const;

  test('is installed by setBackend on wasm', () => {
    expect(tf.getBackend()).toBe('wasm');
    installWasmSlices(); // idempotent
  });

  test.each(dtypes)('slices equal the stock kernel (%s): contiguous, strided, empty, whole', (dtype) => {
    let compared = 0;
    for (const [s, shape] of shapes.entries()) {
      const x = input(shape, dtype, s);
      const regions: [number[], number[]][] = [
        [shape.map(() => 0), shape.slice()], // whole
        [shape.map((d, i) => (i === 0 ? d - 1 : 0)), shape.map((d, i) => (i === 0 ? 1 : d))], // contiguous: last row
        [shape.map((d) => Math.floor(d / 3)), shape.map((d) => d - Math.floor(d / 3) - (d > 2 ? 1 : 0))], // strided interior
        [shape.map(() => 0), shape.map((d, i) => (i === shape.length - 1 ? 0 : d))], // empty
      ];
      for (const [begin, size] of regions) {
        const { stock, ours } = both(() => tf.slice(x, begin, size));
        expect(ours).toEqual(stock);
        compared++;
      }
      x.dispose();
    }
    expect(compared).toBe(shapes.length * 4);
  });

  test.each(dtypes)('unstack and split along every axis equal the stock kernels (%s)', (dtype) => {
    for (const [s, shape] of shapes.entries()) {
      const x = input(shape, dtype, s + 10);
      for (let axis = 0; axis < shape.length; axis++) {
        const u = both(() => tf.unstack(x, axis));
        expect(u.ours).toEqual(u.stock);
        expect(u.ours).toHaveLength(shape[axis]);
        const sizes = shape[axis] >= 3 ? [1, shape[axis] - 3, 2] : [shape[axis]];
        const p = both(() => tf.split(x, sizes, axis - shape.length)); // negative axis too
        expect(p.ours).toEqual(p.stock);
        expect(p.ours.map((t) => t.shape[axis])).toEqual(sizes);
      }
      x.dispose();
    }
  });

  test('head-by-head attention shapes: 32 heads of [520, 128]', () => {
    const x = tf.randomUniform([32, 520, 128], -1, 1, 'float32', 3);
    const { stock, ours } = both(() => tf.unstack(x).filter((_, h) => h % 8 === 5));
    expect(ours).toEqual(stock);
    x.dispose();
  });

  test('gradients through slice, unstack and split are unchanged, and nothing leaks', () => {
    const x = input([3, 4, 5], 'float32', 4);
    const loss = (t: tf.Tensor) => {
      const [a, b] = tf.split(tf.slice(t, [0, 1, 0], [3, 3, 5]), [2, 1], 0);
      return tf.add(tf.sum(tf.mul(a, a)), tf.sum(tf.stack(tf.unstack(b, 2)).mul(3)));
    };
    const before = tf.memory().numTensors;
    const { stock, ours } = both(() => tf.grad(loss)(x));
    expect(ours).toEqual(stock);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
