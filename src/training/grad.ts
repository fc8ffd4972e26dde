/**
 * Gradients of a scalar loss with respect to the trainable parameters of a module tree, keyed by the
 * parameters' paths (`model.multi_modal_projector.linear_1.weight`), plus the one kernel the backends
 * are missing for it.
 *
 * Kernel gap: the gradient of tf.gather (token embeddings, and the placeholder merge that scatters image
 * and video features into the sequence) is UnsortedSegmentSum. The wasm backend has no such kernel, and
 * the cpu backend's builds one masked sum per segment, O(segments · rows · width): for a 32 000-token
 * vocabulary that is hours per step. `registerTrainingKernels` installs one O(rows · width) JavaScript
 * kernel for both. Conv2DBackpropFilter and Einsum are not needed: the patch embedding is reshape +
 * matmul and nothing uses einsum.
 *
 * Gradient gap: tfjs differentiates tf.tile only up to rank 4, and grouped-query attention repeats each
 * key/value head with a rank-5 tile (repeatKv). The Tile gradient is replaced by one of any rank: the
 * sum over the copies, one tiled axis at a time.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { Module, Parameter } from '../layers/module';
import { isTypedArray } from '../weights/dtype';

/** Gradients by parameter path. A parameter the loss does not depend on has no entry (torch: grad None). */
export type NamedGrads = Map<string, tf.Tensor>;

const SEGMENT_SUM = 'UnsortedSegmentSum';
const TRAINING_KERNEL_BACKENDS = ['wasm', 'cpu'] as const;
const installed = new Set<string>();

type TypedArray = Float32Array | Int32Array;

/** The two ways backends create outputs: wasm's makeOutput (cpu has a makeOutput too, with other arguments), cpu's makeTensorInfo. */
interface KernelBackendLike {
  wasm?: unknown;
  readSync(dataId: object): unknown;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: TypedArray): tf.TensorInfo;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: TypedArray): tf.TensorInfo;
}

/**
 * out[s] = Σ x[i] over the rows i with segmentIds[i] = s; ids outside [0, numSegments) are dropped, as
 * in TensorFlow. segmentIds' shape is a prefix of x's shape.
 */
export function segmentSum(values: TypedArray, ids: Int32Array, numSegments: number): TypedArray {
  const inner = ids.length === 0 ? 0 : values.length / ids.length;
  const out = isTypedArray(values, 'Int32Array') ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j] += values[src + j];
  }
  return out;
}

const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const b = backend as unknown as KernelBackendLike;
  const values = b.readSync(x.dataId) as TypedArray;
  const ids = Int32Array.from(b.readSync(segmentIds.dataId) as ArrayLike<number>);
  const out = segmentSum(values, ids, numSegments);
  const shape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  return b.wasm ? b.makeOutput(shape, x.dtype, undefined, out) : b.makeTensorInfo(shape, x.dtype, out);
};

/**
 * d tile(x, reps) / dx for any rank: along an axis of size n tiled r times, output index k·n + j is a
 * copy of j, so [before, r·n, after] is viewed as [before, r, n, after] and summed over r.
 */
function tileGrad(dy: tf.Tensor, x: tf.Tensor, reps: number[]): tf.Tensor {
  let g = dy;
  const shape = [...dy.shape];
  for (let axis = 0; axis < reps.length; axis++) {
    if (reps[axis] === 1) continue;
    const before = shape.slice(0, axis).reduce((a, b) => a * b, 1);
    const after = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
    g = tf.sum(tf.reshape(g, [before, reps[axis], x.shape[axis], after]), 1);
    shape[axis] = x.shape[axis];
  }
  return tf.reshape(g, x.shape);
}

/**
 * Installs the UnsortedSegmentSum kernel for the wasm and cpu backends (replacing cpu's slow one) and
 * the any-rank Tile gradient. Idempotent; `valueAndGrads` calls it, so a user only needs it for their
 * own tf.grads calls.
 */
export function registerTrainingKernels(): void {
  for (const backendName of TRAINING_KERNEL_BACKENDS) {
    if (installed.has(backendName)) continue;
    if (tf.getKernel(SEGMENT_SUM, backendName)) tf.unregisterKernel(SEGMENT_SUM, backendName);
    tf.registerKernel({ kernelName: SEGMENT_SUM, backendName, kernelFunc: unsortedSegmentSumKernel });
    installed.add(backendName);
  }
  if (!installed.has('Tile')) {
    tf.registerGradient({
      kernelName: 'Tile',
      inputsToSave: ['x'],
      gradFunc: (dy, saved, attrs) => ({ x: () => tileGrad(dy as tf.Tensor, saved[0], (attrs as unknown as { reps: number[] }).reps) }),
    });
    installed.add('Tile');
  }
}

/** The trainable parameters of a module tree, or the given list filtered to the trainable ones. */
export function trainableParameters(source: Module | Array<[string, Parameter]>): Array<[string, Parameter]> {
  const all = source instanceof Module ? source.namedParameters() : source;
  return all.filter(([, p]) => p.trainable && p.loaded);
}

export interface LossAndGrads {
  /** The loss f() returned (caller disposes). */
  loss: tf.Scalar;
  /** d loss / d parameter for every trainable parameter the loss depends on (caller disposes). */
  grads: NamedGrads;
}

/**
 * Runs `f` under a gradient tape and returns its value and the gradients of the trainable parameters
 * of `source` (a module tree, or an explicit [path, Parameter] list). Everything f creates except the
 * returned loss is freed. Throws InputError when no trainable parameter influences the loss.
 */
export function valueAndGrads(source: Module | Array<[string, Parameter]>, f: () => tf.Scalar): LossAndGrads {
  registerTrainingKernels();
  const params = trainableParameters(source);
  if (params.length === 0) throw new InputError('parameters', 'no trainable parameter: unfreeze some before computing gradients');
  // The engine's own call (what tf.variableGrads wraps), so that the loss is freed when nothing connects.
  const { value, grads: list } = tf.engine().gradients(f, params.map(([, p]) => p.value), undefined, true);
  if (value.rank !== 0 || list.every((g) => g == null)) {
    const shape = value.shape;
    tf.dispose([value, ...list.filter((g) => g != null)]);
    if (shape.length !== 0) throw new InputError('loss', `expected a scalar, found shape [${shape.join(', ')}]`);
    throw new InputError('loss', `the loss does not depend on any of the ${params.length} trainable parameters`);
  }
  const grads: NamedGrads = new Map();
  list.forEach((g, i) => {
    if (g == null) return;
    const [name, p] = params[i];
    // Reported in the checkpoint layout, the shape torch's .grad has (Linear stores Wᵀ).
    if (p.layout) {
      grads.set(name, p.toCheckpointLayout(g));
      g.dispose();
    } else {
      grads.set(name, g);
    }
  });
  return { loss: value as tf.Scalar, grads };
}

/** Frees every gradient of a map. */
export function disposeGrads(grads: NamedGrads): void {
  tf.dispose([...grads.values()]);
  grads.clear();
}
