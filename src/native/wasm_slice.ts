/**
 * Slice, Unpack (tf.unstack) and SplitV (tf.split) for the stock wasm backend, copying only what each piece holds.
 *
 * tfjs-backend-wasm 4.22 runs these in JS over `backend.readSync(x)`, which copies the whole input out of the wasm
 * heap on every call, and Unpack and SplitV call it once per piece: unstacking the 32 heads of a 2074-token prompt
 * (attention head by head) copied 1.1 GB per call, a quarter of a 7B video prompt's prefill. Here each piece reads
 * a view of the heap, taken after its output is allocated (an allocation may grow the heap and detach older views),
 * and copies its own elements, a run of the last dimension at a time. Same results, bit for bit; strings stay
 * with the stock kernels. Installed by setBackend('wasm') (src/backend.ts), in Node and in the page.
 */
import * as tf from '@tensorflow/tfjs';

type HeapArray = Float32Array | Int32Array | Uint8Array;

/** The parts of tfjs-backend-wasm's BackendWasm used here (not public API). */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): HeapArray;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
type KernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** x[begin : begin + size] as a new tensor of shape `outShape` (same element count as `size`). */
function copyRegion(backend: WasmBackend, x: tf.TensorInfo, begin: number[], size: number[], outShape = size): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  const count = tf.util.sizeFromShape(size);
  if (count === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  if (rank === 0) {
    dst[0] = src[0];
    return out;
  }
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const from = tf.slice_util.computeFlatOffset(begin, strides);
    dst.set(src.subarray(from, from + count));
    return out;
  }
  const run = size[rank - 1];
  const index = new Array<number>(rank - 1).fill(0);
  for (let at = 0; at < count; at += run) {
    let from = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) from += (begin[d] + index[d]) * strides[d];
    dst.set(src.subarray(from, from + run), at);
    for (let d = rank - 2; d >= 0 && ++index[d] === size[d]; d--) index[d] = 0;
  }
  return out;
}

function makeSlice(stock: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string' || x.dtype === 'complex64') return stock(args);
    const attrs = args.attrs as { begin: number | number[]; size?: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    tf.slice_util.assertParamsValid(x as tf.Tensor, begin, size);
    return copyRegion(args.backend as WasmBackend, x, begin, size);
  };
}

function makeUnpack(stock: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.value as tf.TensorInfo;
    if (x.dtype === 'string' || x.dtype === 'complex64') return stock(args);
    const rank = x.shape.length;
    const axis = ((args.attrs as { axis: number }).axis + rank) % rank;
    const outShape = x.shape.filter((_, d) => d !== axis);
    const size = x.shape.slice();
    size[axis] = 1;
    return Array.from({ length: x.shape[axis] }, (_, i) => {
      const begin = new Array<number>(rank).fill(0);
      begin[axis] = i;
      return copyRegion(args.backend as WasmBackend, x, begin, size, outShape);
    });
  };
}

function makeSplitV(stock: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string' || x.dtype === 'complex64') return stock(args);
    const attrs = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = x.shape.slice();
      size[axis] = s;
      const piece = copyRegion(args.backend as WasmBackend, x, begin.slice(), size);
      begin[axis] += s;
      return piece;
    });
  };
}

const KERNELS: Record<string, (stock: KernelFunc) => KernelFunc> = { Slice: makeSlice, Unpack: makeUnpack, SplitV: makeSplitV };
/** The stock kernels replaced, while installed. */
let stockKernels: tf.KernelConfig[] | null = null;

/** Replaces the wasm backend's Slice, Unpack and SplitV kernels (once; a no-op where tfjs-backend-wasm is absent). */
export function installWasmSlices(): void {
  if (stockKernels) return;
  stockKernels = [];
  for (const [name, make] of Object.entries(KERNELS)) {
    const stock = tf.getKernel(name, 'wasm');
    if (!stock) continue;
    stockKernels.push(stock);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...stock, kernelFunc: make(stock.kernelFunc as KernelFunc) as tf.KernelFunc });
  }
}

/** Puts the stock kernels back (tests compare the two). */
export function uninstallWasmSlices(): void {
  if (!stockKernels) return;
  for (const stock of stockKernels) {
    tf.unregisterKernel(stock.kernelName, 'wasm');
    tf.registerKernel(stock);
  }
  stockKernels = null;
}
