/**
 * Products with a weight kept in its stored format (src/weights/stored.ts), as tfjs ops with gradients:
 *
 *   storedMatMul(x, w)         x·Wᵀ   [m, cols] → [m, rows]   (Linear's forward)
 *   storedMatMul(x, w, true)   x·W    [m, rows] → [m, cols]   (its gradient with respect to x)
 *
 * Three routes to the same numbers (exact products of the widened values, float32 accumulation):
 *   addon, wasm or cpu backend   a registered kernel runs on the backend's own memory (no copy of anything)
 *   addon, other backends        x is read out and the product written into a new tensor
 *   no addon                     blocks of rows widened into the heap one at a time for tf.matMul
 * The weight itself is never copied whole into float32. It gets no gradient (stored weights are frozen).
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { StoredWeight } from '../weights/stored';
import { platform } from '../platform';
import { NATIVE_BACKENDS, NativeBackendName, backendMemory } from './kernels';

export const STORED_MATMUL = 'VideoLlavaStoredMatMul';
/** Largest float32 block of a weight the fallback widens at once. */
const BLOCK_BYTES = 64 * 1024 * 1024;

interface Attrs {
  weight: StoredWeight;
  transposed: boolean;
}

export function storedMatMul(x: tf.Tensor2D, w: StoredWeight, transposed = false): tf.Tensor2D {
  const inner = transposed ? w.rows : w.cols;
  if (x.rank !== 2 || x.shape[1] !== inner) {
    throw new InputError('x', `expected [m, ${inner}] for a product with a [${w.shape.join(', ')}] weight${transposed ? '' : 'ᵀ'}, found [${x.shape.join(', ')}]`);
  }
  if (w.disposed) throw new InputError('weight', 'the stored weight was disposed');
  const backend = tf.getBackend();
  if (platform.nativeAddon() && (NATIVE_BACKENDS as readonly string[]).includes(backend) && registerKernels()) {
    const attrs = { weight: w, transposed } as unknown as NamedAttrMap;
    return tf.engine().runKernel(STORED_MATMUL, { x }, attrs) as tf.Tensor2D;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const product = tf.customGrad(((input: tf.Tensor) => ({
    value: platform.nativeAddon() ? viaCopies(input as tf.Tensor2D, w, transposed) : widenedBlocks(input as tf.Tensor2D, w, transposed),
    gradFunc: (dy: tf.Tensor) => storedMatMul(dy as tf.Tensor2D, w, !transposed),
  })) as any);
  return product(x) as tf.Tensor2D;
}

function outputShape(x: { shape: number[] }, w: StoredWeight, transposed: boolean): [number, number] {
  return [x.shape[0], transposed ? w.cols : w.rows];
}

function viaCopies(x: tf.Tensor2D, w: StoredWeight, transposed: boolean): tf.Tensor2D {
  const shape = outputShape(x, w, transposed);
  const out = new Float32Array(shape[0] * shape[1]);
  const addon = platform.nativeAddon()!;
  if (!w.nativeProduct(addon, x.dataSync() as Float32Array, shape[0], out, transposed)) return widenedBlocks(x, w, transposed);
  return tf.tensor2d(out, shape);
}

function widenedBlocks(x: tf.Tensor2D, w: StoredWeight, transposed: boolean): tf.Tensor2D {
  const step = Math.max(1, Math.floor(BLOCK_BYTES / (4 * w.cols)));
  const parts: tf.Tensor2D[] = [];
  for (let r0 = 0; r0 < w.rows; r0 += step) {
    const r1 = Math.min(w.rows, r0 + step);
    parts.push(
      tf.tidy(() => {
        const block = tf.tensor2d(w.widenRows(r0, r1), [r1 - r0, w.cols]);
        // x·Wᵀ: this block gives output columns r0..r1; x·W: it adds x[:, r0..r1]·block to every column
        return transposed ? tf.matMul(tf.slice(x, [0, r0], [x.shape[0], r1 - r0]), block) : tf.matMul(x, block, false, true);
      }),
    );
  }
  if (parts.length === 1) return parts[0];
  const out = transposed ? tf.addN(parts) : tf.concat(parts, 1);
  tf.dispose(parts);
  return out;
}

// ---- the registered kernel ------------------------------------------------------------------------------------

function kernelFor(backendName: NativeBackendName): KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const { x } = inputs as { x: TensorInfo };
    const { weight, transposed } = attrs as unknown as Attrs;
    const memory = backendMemory(backendName, backend);
    const out = memory.output(outputShape(x, weight, transposed));
    const addon = platform.nativeAddon()!;
    // Views only after the output is allocated: allocation may grow (and move) the wasm heap.
    if (!memory.readable(x) || !weight.nativeProduct(addon, memory.view(x), x.shape[0], memory.view(out), transposed)) {
      throw new InputError('x', `no native product for a ${weight.format} weight on ${backendName}`);
    }
    return out;
  };
}

let registered = false;

function registerKernels(): boolean {
  if (registered) return true;
  for (const backendName of NATIVE_BACKENDS) {
    if (!tf.getKernel(STORED_MATMUL, backendName)) tf.registerKernel({ kernelName: STORED_MATMUL, backendName, kernelFunc: kernelFor(backendName) });
  }
  const gradient: GradConfig = {
    kernelName: STORED_MATMUL,
    gradFunc: (dy, _saved, attrs) => {
      const { weight, transposed } = attrs as unknown as Attrs;
      return { x: () => storedMatMul(dy as tf.Tensor2D, weight, !transposed) };
    },
  };
  if (!tf.getGradient(STORED_MATMUL)) tf.registerGradient(gradient);
  registered = true;
  return true;
}
