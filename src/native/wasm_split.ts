/**
 * A faster stock-wasm BatchMatMul for long inner dimensions and transposed operands, with no native library.
 *
 * tfjs-backend-wasm hands x·W to XNNPACK's fully-connected operator (one packed copy of W per weight
 * tensor, cached by its id). At the 7B widths that operator slows down as the inner dimension K grows:
 * measured here, [32, 4096]·[4096, 11008] runs at 22 GFLOPS, [2074, 4096]·[4096, 4096] at 26, while 1024³
 * runs at 44. Split into K-blocks of 512 rows of W, the same products run at 40–44 GFLOPS. A K-block of a
 * row-major W [K, N] is a contiguous range of its memory, so each block is registered with the wasm
 * module as a tensor id that aliases that range (no copy; XNNPACK packs and caches each block once, the
 * same total as packing W whole). y = Σ_b x[:, block b] · W[block b, :]; the column blocks of x are
 * copied (rows · K floats, small next to the product) and the partial products summed in place.
 *
 * Transposed operands (a Linear's backward: dy·Wᵀ, xᵀ·dy), which tfjs-wasm runs on a scalar loop, are
 * first laid out plainly with the wasm Transpose (one copy). The split itself is only for float32,
 * untransposed operands, a right operand without batch dimensions, K ≥ SPLIT_MIN_K and N ≥ SPLIT_MIN_N;
 * everything else goes to the stock kernel. The aliases of a tensor are released with its memory: the
 * backend's disposeData is wrapped once for that.
 */
import * as tf from '@tensorflow/tfjs';

/** Inner dimensions from this size are split (at 1024 the stock operator already runs at full speed). */
export const SPLIT_MIN_K = 2048;
/**
 * Outputs at least this wide: below it the copies of x's column blocks cost more than the split gains
 * (measured: N = 256 ×0.86, N = 128 ×0.44 — attention's probs·v per head —, N = 512 ×1.33).
 */
export const SPLIT_MIN_N = 512;
/** Rows of W per block: 512 and 256 measured equally fast, 1024 clearly slower. */
export const SPLIT_BLOCK = 512;
/** Tunable: the largest partial-product buffer (the scratch the K-blocks after the first write into). */
export const wasmSplitSettings = { scratchBytes: 16 * 2 ** 20 };

interface TensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: string;
}

interface WasmModule {
  HEAPF32: Float32Array;
  cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}

/** The parts of tfjs-backend-wasm's BackendWasm this kernel uses (not public API: checked at install). */
interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): TensorData | undefined };
  dataIdNextNumber: number;
  disposeData(dataId: object, force?: boolean): boolean;
  makeOutput(shape: number[], dtype: string): tf.TensorInfo;
}

type KernelFunc = (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => tf.TensorInfo | tf.TensorInfo[];

interface State {
  stock: tf.KernelConfig;
  ours: tf.KernelConfig;
  /** The backend's own disposeData, put back by uninstall. */
  dispose: WasmBackend['disposeData'];
  /** Per backend tensor (dataId) and shape: the alias ids of its K-blocks. */
  aliases: Map<object, Map<string, number[]>>;
  calls: { split: number; stock: number; transposed: number };
}

let state: State | null = null;

function isWasmBackend(b: unknown): b is WasmBackend {
  const x = b as Partial<WasmBackend> | null;
  return !!x && typeof x.wasm?.cwrap === 'function' && typeof x.wasm?.tfjs?.registerTensor === 'function' && typeof x.wasm?.tfjs?.disposeData === 'function' && !!x.dataIdMap && typeof x.dataIdNextNumber === 'number' && typeof x.makeOutput === 'function';
}

const prod = (xs: readonly number[]) => xs.reduce((p, v) => p * v, 1);

/** Transposed products from this many multiply-adds are laid out plainly first (below, the copy does not pay). */
export const TRANSPOSE_MIN_MACS = 2 ** 16;

/** Float32, no batch dimensions beyond leading 1s, big enough: a transposed product worth a copy. */
function worthTransposing(a: tf.TensorInfo, b: tf.TensorInfo, ta: boolean, tb: boolean): boolean {
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return false;
  if (prod(a.shape.slice(0, -2)) !== 1 || prod(b.shape.slice(0, -2)) !== 1) return false;
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = ta ? ac : ar;
  const K = ta ? ar : ac;
  const N = tb ? br : bc;
  return M * K * N >= TRANSPOSE_MIN_MACS && K === (tb ? bc : br);
}

/** The stock kernel's output shape: the broadcast batch dimensions of a and b, then [M, N]. */
function outputShape(a: tf.TensorInfo, b: tf.TensorInfo, M: number, N: number): number[] {
  return [...tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), M, N];
}

/** sum += part over n float32 values at those heap offsets (views made now: the heap may have grown). */
function addInto(backend: WasmBackend, sumOffset: number, partOffset: number, n: number): void {
  const heap = backend.wasm.HEAPF32.buffer;
  const s = new Float32Array(heap, sumOffset, n);
  const p = new Float32Array(heap, partOffset, n);
  for (let i = 0; i < n; i++) s[i] += p[i];
}

/**
 * Registers the split kernel for wasm (once; later calls only report). Returns false where the wasm
 * backend is not the one expected (its internals changed): the stock kernel then stays.
 */
export function installWasmSplitMatmul(): boolean {
  if (state) return true;
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  const backend = tf.findBackend('wasm');
  if (!stock || !isWasmBackend(backend)) return false;
  const wasmBatchMatMul = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  const slice = tf.getKernel('Slice', 'wasm')!.kernelFunc as KernelFunc;
  const reshape = tf.getKernel('Reshape', 'wasm')!.kernelFunc as KernelFunc;
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc as KernelFunc;
  const aliases = new Map<object, Map<string, number[]>>();
  const calls = { split: 0, stock: 0, transposed: 0 };

  // Release a tensor's aliases (and so XNNPACK's packed blocks) when its memory goes.
  const dispose = backend.disposeData; // restored as is by uninstall
  backend.disposeData = (dataId: object, force?: boolean) => {
    const released = dispose.call(backend, dataId, force);
    const own = released ? aliases.get(dataId) : undefined;
    if (own) {
      for (const ids of own.values()) for (const id of ids) backend.wasm.tfjs.disposeData(id);
      aliases.delete(dataId);
    }
    return released;
  };

  const blockIds = (b: tf.TensorInfo, K: number, N: number): number[] => {
    const key = `${K}x${N}`;
    let own = aliases.get(b.dataId);
    const known = own?.get(key);
    if (known) return known;
    const data = backend.dataIdMap.get(b.dataId)!;
    const ids: number[] = [];
    for (let k0 = 0; k0 < K; k0 += SPLIT_BLOCK) {
      const rows = Math.min(SPLIT_BLOCK, K - k0);
      const id = backend.dataIdNextNumber++;
      backend.wasm.tfjs.registerTensor(id, rows * N, data.memoryOffset + 4 * k0 * N);
      ids.push(id);
    }
    if (!own) aliases.set(b.dataId, (own = new Map()));
    own.set(key, ids);
    return ids;
  };

  const kernelFunc: KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
    if ((transposeA || transposeB) && args.backend === backend && worthTransposing(a, b, !!transposeA, !!transposeB)) {
      // tfjs-wasm runs any transposed operand on its scalar loop (1–4 GFLOPS; a Linear's backward is
      // dy·Wᵀ and xᵀ·dy): lay the operand out transposed (one copy) and take XNNPACK instead (35–44)
      calls.transposed++;
      const temps: tf.TensorInfo[] = [];
      const plain = (x: tf.TensorInfo, flip: boolean): tf.TensorInfo => {
        if (!flip) return x;
        const rows = x.shape[x.shape.length - 2];
        const cols = x.shape[x.shape.length - 1];
        const x2 = reshape({ inputs: { x }, backend, attrs: { shape: [rows, cols] } }) as tf.TensorInfo;
        const t = transpose({ inputs: { x: x2 }, backend, attrs: { perm: [1, 0] } }) as tf.TensorInfo;
        temps.push(x2, t);
        return t;
      };
      try {
        const out = kernelFunc({ inputs: { a: plain(a, !!transposeA), b: plain(b, !!transposeB) }, backend, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo;
        const shape = outputShape(a, b, out.shape[out.shape.length - 2], out.shape[out.shape.length - 1]);
        if (shape.length === out.shape.length) return out;
        temps.push(out);
        return reshape({ inputs: { x: out }, backend, attrs: { shape } }) as tf.TensorInfo;
      } finally {
        for (const t of temps) backend.disposeData(t.dataId);
      }
    }
    const K = a.shape[a.shape.length - 1];
    const N = b.shape[b.shape.length - 1];
    const eligible =
      args.backend === backend && !transposeA && !transposeB && a.dtype === 'float32' && b.dtype === 'float32' && K >= SPLIT_MIN_K && a.shape.length >= 2 && b.shape.length >= 2 && prod(b.shape.slice(0, -2)) === 1 && N >= SPLIT_MIN_N && prod(a.shape) > 0;
    if (!eligible) {
      calls.stock++;
      return (stock.kernelFunc as KernelFunc)(args);
    }
    calls.split++;
    const rows = prod(a.shape.slice(0, -1));
    const a2 = reshape({ inputs: { x: a }, backend, attrs: { shape: [rows, K] } }) as tf.TensorInfo;
    const ids = blockIds(b, K, N);
    // Rows go in blocks whose partial products fit wasmSplitSettings.scratchBytes: for each, the first K-block writes its
    // rows of the result directly (an alias of that range), later K-blocks write a scratch buffer that is
    // added in place. Near the 4 GiB heap ceiling a second [rows, N] buffer would not fit.
    const sum = backend.makeOutput([1, rows, N], 'float32');
    const sumOffset = backend.dataIdMap.get(sum.dataId)!.memoryOffset;
    const rowBlock = Math.max(1, Math.min(rows, Math.floor(wasmSplitSettings.scratchBytes / (4 * N))));
    const scratch = ids.length > 1 ? backend.makeOutput([1, rowBlock, N], 'float32') : null;
    const scratchId = scratch ? backend.dataIdMap.get(scratch.dataId)!.id : 0;
    const shapeBytes = (d: number[]) => new Uint8Array(new Int32Array(d).buffer);
    for (let r0 = 0; r0 < rows; r0 += rowBlock) {
      const nr = Math.min(rowBlock, rows - r0);
      const rowsId = backend.dataIdNextNumber++;
      backend.wasm.tfjs.registerTensor(rowsId, nr * N, sumOffset + 4 * r0 * N);
      ids.forEach((bId, i) => {
        const k0 = i * SPLIT_BLOCK;
        const width = Math.min(SPLIT_BLOCK, K - k0);
        const part = slice({ inputs: { x: a2 }, backend, attrs: { begin: [r0, k0], size: [nr, width] } }) as tf.TensorInfo;
        const partId = backend.dataIdMap.get(part.dataId)!.id;
        wasmBatchMatMul(partId, shapeBytes([1, nr, width]), 3, bId, shapeBytes([1, width, N]), 3, false, false, i === 0 ? rowsId : scratchId);
        backend.disposeData(part.dataId);
        if (i > 0) addInto(backend, sumOffset + 4 * r0 * N, backend.dataIdMap.get(scratch!.dataId)!.memoryOffset, nr * N);
      });
      backend.wasm.tfjs.disposeData(rowsId);
    }
    if (scratch) backend.disposeData(scratch.dataId);
    backend.disposeData(a2.dataId);
    const result = reshape({ inputs: { x: sum }, backend, attrs: { shape: outputShape(a, b, a.shape[a.shape.length - 2], N) } }) as tf.TensorInfo;
    backend.disposeData(sum.dataId);
    return result;
  };

  const ours: tf.KernelConfig = { ...stock, kernelFunc: kernelFunc as tf.KernelFunc };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel(ours);
  state = { stock, ours, dispose, aliases, calls };
  return true;
}

/** Puts the stock wasm kernel back where ours is the registered one (for comparisons and tests). */
export function uninstallWasmSplitMatmul(): void {
  if (!state) return;
  if (tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc === state.ours.kernelFunc) {
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel(state.stock);
  }
  const backend = tf.findBackend('wasm') as unknown as WasmBackend;
  for (const own of state.aliases.values()) for (const ids of own.values()) for (const id of ids) backend.wasm.tfjs.disposeData(id);
  state.aliases.clear();
  backend.disposeData = state.dispose;
  state = null;
}

/** Products the split kernel took and handed to the stock kernel since install (null when not installed). */
export function wasmSplitMatmulCalls(): { split: number; stock: number; transposed: number } | null {
  return state ? { ...state.calls } : null;
}
