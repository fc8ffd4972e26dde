/**
 * BatchMatMul and _FusedMatMul on native sgemm (sgemv for a single row or column), registered under
 * the stock kernels' names for the `wasm` and `cpu` backends. Gradients are registered by kernel name,
 * so backprop through tf.matMul is unchanged (its gradient calls tf.matMul, which lands here again).
 *
 * No copies: on wasm the operands are Float32Array views of the backend's WebAssembly heap at each
 * tensor's memoryOffset and the result is written into the output the backend allocated there; on cpu
 * they are the backend's own typed arrays.
 *
 * Falls back to the stock kernel (kept from before registration) for anything else: non-float32
 * dtypes, GEMMs too small to repay the call (see `minMacs`), bias or prelu shapes other than a
 * row vector, and unknown activations.
 *
 * Some cases always run here, however small, because the stock kernels get them wrong (tfjs 4.22):
 * an inner dimension of 0 (stock wasm returns uninitialised memory; empty sums are 0), an empty batch
 * (stock wasm traps on a remainder by zero), batch shapes that both broadcast, e.g. [2,1]×[1,3] (both
 * stock kernels index the flattened batch modulo its size and return 6 matrices' shape over 3
 * matrices' data), and on wasm a fused bias with more than one matrix (stock adds it to the wrong
 * elements).
 */
import * as tf from '@tensorflow/tfjs';
import type { DataId, KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import type { Sgemm, Sgemv } from './blas';
import { NO_TRANS, TRANS } from './codes';

export type NativeBackendName = 'wasm' | 'cpu';
export const NATIVE_BACKENDS: readonly NativeBackendName[] = ['wasm', 'cpu'];
const KERNEL_NAMES = [tf.BatchMatMul, tf._FusedMatMul] as const;

/** Shared by the registered kernels; enable/disable update it in place. */
export interface KernelSettings {
  sgemm: Sgemm;
  sgemv: Sgemv | null;
  /** A GEMM call of fewer multiply-adds (m·n·k) than this goes to the stock kernel. */
  minMacs: number;
  /** Calls served natively and handed to the stock kernel, since enabling. */
  counts: { native: number; stock: number };
}

// ---- where each backend keeps float32 data -------------------------------------------------------

export interface Memory {
  /** Whether the tensor's elements can be viewed as one Float32Array. */
  readable(t: TensorInfo): boolean;
  /** A new float32 output of this shape, in the backend's own storage. */
  output(shape: number[]): TensorInfo;
  /** The elements, in place. On wasm, only valid until the next allocation (the heap may grow). */
  view(t: TensorInfo): Float32Array;
}

interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(id: DataId): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
}

interface CpuBackend {
  data: { get(id: DataId): { values?: unknown } };
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

function wasmMemory(backend: WasmBackend): Memory {
  return {
    readable: (t) => t.dtype === 'float32',
    output: (shape) => backend.makeOutput(shape, 'float32'),
    view: (t) => new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(t.dataId).memoryOffset, sizeOf(t.shape)),
  };
}

function cpuMemory(backend: CpuBackend): Memory {
  const values = (t: TensorInfo) => backend.data.get(t.dataId).values;
  return {
    // Realm-independent test (tfjs may run in a jest sandbox with its own Float32Array).
    readable: (t) => {
      const v = values(t);
      return t.dtype === 'float32' && Object.prototype.toString.call(v) === '[object Float32Array]' && (v as Float32Array).length === sizeOf(t.shape);
    },
    output: (shape) => backend.makeTensorInfo(shape, 'float32', new Float32Array(sizeOf(shape))),
    view: (t) => values(t) as Float32Array,
  };
}

const MEMORY: Record<NativeBackendName, (backend: unknown) => Memory> = {
  wasm: (b) => wasmMemory(b as WasmBackend),
  cpu: (b) => cpuMemory(b as CpuBackend),
};

/** In-place access to a wasm or cpu backend's float32 tensors (also used by src/native/stored_matmul.ts). */
export function backendMemory(backendName: NativeBackendName, backend: unknown): Memory {
  return MEMORY[backendName](backend);
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---- the GEMM plan -------------------------------------------------------------------------------

/** One batched product op(A)·op(B) over broadcast batch dims, as sgemm calls. */
export interface GemmPlan {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  outShape: number[]; // [...batch, m, n]
  batch: number; // output matrices
  aIndex: Int32Array; // for each output matrix, which matrix of A (row-major over A's batch dims)
  bIndex: Int32Array;
  /** One matrix in B and untransposed A with all its own matrices: a single GEMM of batch·m rows. */
  fold: boolean;
  /** Whether the stock kernels compute this batch broadcast correctly (one side 1, or both equal). */
  stockBroadcastOk: boolean;
}

/** The plan for tfjs matMul semantics, or null where the shapes do not multiply (stock says why). */
export function planGemm(aShape: readonly number[], bShape: readonly number[], transA: boolean, transB: boolean): GemmPlan | null {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return null;
  const m = transA ? aShape[ra - 1] : aShape[ra - 2];
  const k = transA ? aShape[ra - 2] : aShape[ra - 1];
  const kb = transB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transB ? bShape[rb - 2] : bShape[rb - 1];
  if (k !== kb) return null;
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const rank = Math.max(aBatch.length, bBatch.length);
  const outBatch: number[] = [];
  for (let d = 0; d < rank; d++) {
    const da = aBatch[d - rank + aBatch.length] ?? 1;
    const db = bBatch[d - rank + bBatch.length] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    outBatch.push(da === 1 ? db : da);
  }
  const batch = sizeOf(outBatch);
  const aCount = sizeOf(aBatch);
  const bCount = sizeOf(bBatch);
  return {
    m,
    n,
    k,
    transA,
    transB,
    outShape: [...outBatch, m, n],
    batch,
    aIndex: batchIndex(aBatch, outBatch),
    bIndex: batchIndex(bBatch, outBatch),
    fold: !transA && bCount === 1 && aCount === batch,
    stockBroadcastOk: aCount === 1 || bCount === 1 || (aCount === batch && bCount === batch),
  };
}

/** For each entry of the broadcast batch `out`, the flat index of the entry it reads in `own`. */
function batchIndex(own: readonly number[], out: readonly number[]): Int32Array {
  const index = new Int32Array(sizeOf(out));
  const offset = out.length - own.length;
  const stride = new Array<number>(out.length).fill(0);
  let s = 1;
  for (let d = own.length - 1; d >= 0; d--) {
    if (own[d] !== 1) stride[d + offset] = s;
    s *= own[d];
  }
  const pos = new Array<number>(out.length).fill(0);
  for (let i = 0; i < index.length; i++) {
    let flat = 0;
    for (let d = 0; d < out.length; d++) flat += pos[d] * stride[d];
    index[i] = flat;
    for (let d = out.length - 1; d >= 0; d--) {
      if (++pos[d] < out[d]) break;
      pos[d] = 0;
    }
  }
  return index;
}

/** Multiply-adds of the largest single sgemm call the plan makes. */
function macsPerCall(p: GemmPlan): number {
  return (p.fold ? p.batch : 1) * p.m * p.n * p.k;
}

/** Whether the stock kernels compute this plan correctly (see the header for the cases they do not). */
function stockHandles(p: GemmPlan): boolean {
  return p.k > 0 && sizeOf(p.outShape) > 0 && p.stockBroadcastOk;
}

/** Whether a plan the stock kernel handles is too small to repay a native call. */
function tooSmall(p: GemmPlan, minMacs: number): boolean {
  return macsPerCall(p) < minMacs;
}

/** The BLAS calls runGemm makes. */
export interface Gemm {
  sgemm: Sgemm;
  sgemv: Sgemv | null;
}

/** c = op(a)·op(b) + beta·c for every output matrix. */
export function runGemm(blas: Gemm, p: GemmPlan, a: Float32Array, b: Float32Array, c: Float32Array, beta: 0 | 1): void {
  if (c.length === 0) return;
  if (p.k === 0) {
    if (beta === 0) c.fill(0); // empty sums
    return;
  }
  if (p.fold) {
    product(blas, p, p.batch * p.m, a, b, c, beta);
    return;
  }
  const aSize = p.m * p.k;
  const bSize = p.k * p.n;
  const cSize = p.m * p.n;
  for (let i = 0; i < p.batch; i++) {
    const ai = p.aIndex[i] * aSize;
    const bi = p.bIndex[i] * bSize;
    const ci = i * cSize;
    product(blas, p, p.m, a.subarray(ai, ai + aSize), b.subarray(bi, bi + bSize), c.subarray(ci, ci + cSize), beta);
  }
}

/**
 * One matrix product with `rows` rows of op(A). A single row or column is a matrix-vector product, and
 * both operands of it are contiguous whatever the transposes: a row of op(A) is a [1,k] or [k,1] block,
 * a column of op(B) a [k,1] or [1,k] block.
 */
function product(blas: Gemm, p: GemmPlan, rows: number, a: Float32Array, b: Float32Array, c: Float32Array, beta: 0 | 1): void {
  const { n, k } = p;
  const lda = p.transA ? rows : k;
  const ldb = p.transB ? k : n;
  if (blas.sgemv && rows === 1) {
    // cᵀ = op(B)ᵀ·aᵀ: B stored [n,k] is used as is, B stored [k,n] transposed.
    blas.sgemv(p.transB ? NO_TRANS : TRANS, p.transB ? n : k, p.transB ? k : n, 1, b, ldb, a, 1, beta, c, 1);
  } else if (blas.sgemv && n === 1) {
    // c = op(A)·b: A stored [rows,k] as is, A stored [k,rows] transposed.
    blas.sgemv(p.transA ? TRANS : NO_TRANS, p.transA ? k : rows, p.transA ? rows : k, 1, a, lda, b, 1, beta, c, 1);
  } else {
    blas.sgemm(p.transA ? TRANS : NO_TRANS, p.transB ? TRANS : NO_TRANS, rows, n, k, 1, a, lda, b, ldb, beta, c, n);
  }
}

// ---- bias and activations ------------------------------------------------------------------------

type Activation = 'linear' | 'relu' | 'relu6' | 'elu' | 'leakyrelu' | 'prelu' | 'sigmoid';
const ACTIVATIONS = new Set<string>(['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid']);

/** A shape that broadcasts along the last axis only: a scalar or [1, …, 1, n]. */
function isRowVector(shape: readonly number[], n: number): boolean {
  const size = sizeOf(shape);
  return size === 1 || (shape.length > 0 && shape[shape.length - 1] === n && size === n);
}

/** Every row of c (length n) set to `row` (length n, or 1 for a scalar). */
function fillRows(c: Float32Array, row: Float32Array, n: number): void {
  if (row.length === 1) {
    c.fill(row[0]);
    return;
  }
  for (let r = 0; r < c.length; r += n) c.set(row, r);
}

/** In place, with the formulas of tfjs's own activation kernels. */
function activate(c: Float32Array, activation: Activation, n: number, alpha: number, prelu: Float32Array | null): void {
  const len = c.length;
  switch (activation) {
    case 'linear':
      return;
    case 'relu':
      for (let i = 0; i < len; i++) if (c[i] < 0) c[i] = 0;
      return;
    case 'relu6':
      for (let i = 0; i < len; i++) c[i] = Math.min(Math.max(c[i], 0), 6);
      return;
    case 'elu':
      for (let i = 0; i < len; i++) if (c[i] < 0) c[i] = Math.exp(c[i]) - 1;
      return;
    case 'leakyrelu':
      for (let i = 0; i < len; i++) if (c[i] < 0) c[i] *= alpha;
      return;
    case 'sigmoid':
      for (let i = 0; i < len; i++) c[i] = 1 / (1 + Math.exp(-c[i]));
      return;
    case 'prelu': {
      const w = prelu as Float32Array;
      for (let r = 0; r < len; r += n) {
        for (let j = 0; j < n; j++) if (c[r + j] < 0) c[r + j] *= w.length === 1 ? w[0] : w[j];
      }
      return;
    }
  }
}

// ---- the kernels ---------------------------------------------------------------------------------

interface FusedInputs {
  a: TensorInfo;
  b: TensorInfo;
  bias?: TensorInfo;
  preluActivationWeights?: TensorInfo;
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  activation?: string;
  leakyreluAlpha?: number;
}

function attrsOf(attrs: NamedAttrMap | undefined): MatMulAttrs {
  return (attrs ?? { transposeA: false, transposeB: false }) as unknown as MatMulAttrs;
}

function batchMatMulKernel(backendName: NativeBackendName, stock: KernelFunc, settings: KernelSettings): KernelFunc {
  return (params) => {
    const { a, b } = params.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrsOf(params.attrs);
    const memory = MEMORY[backendName](params.backend);
    const plan = planGemm(a.shape, b.shape, !!transposeA, !!transposeB);
    if (!plan || !memory.readable(a) || !memory.readable(b) || (stockHandles(plan) && tooSmall(plan, settings.minMacs))) {
      settings.counts.stock++;
      return stock(params);
    }
    settings.counts.native++;
    const out = memory.output(plan.outShape);
    runGemm(settings, plan, memory.view(a), memory.view(b), memory.view(out), 0);
    return out;
  };
}

function fusedMatMulKernel(backendName: NativeBackendName, stock: KernelFunc, settings: KernelSettings): KernelFunc {
  return (params) => {
    const { a, b, bias, preluActivationWeights: prelu } = params.inputs as unknown as FusedInputs;
    const { transposeA, transposeB, activation = 'linear', leakyreluAlpha = 0.2 } = attrsOf(params.attrs);
    const memory = MEMORY[backendName](params.backend);
    const plan = planGemm(a.shape, b.shape, !!transposeA, !!transposeB);
    const ok =
      plan !== null &&
      memory.readable(a) &&
      memory.readable(b) &&
      ACTIVATIONS.has(activation) &&
      (!bias || (memory.readable(bias) && isRowVector(bias.shape, plan.n))) &&
      (activation !== 'prelu' || (!!prelu && memory.readable(prelu) && isRowVector(prelu.shape, plan.n))) &&
      !(stockHandles(plan) && !(backendName === 'wasm' && bias && plan.batch > 1) && tooSmall(plan, settings.minMacs));
    if (!ok || !plan) {
      settings.counts.stock++;
      return stock(params);
    }
    settings.counts.native++;
    const out = memory.output(plan.outShape);
    const c = memory.view(out);
    if (bias) fillRows(c, memory.view(bias), plan.n); // then C = A·B + C adds it, at no extra pass
    runGemm(settings, plan, memory.view(a), memory.view(b), c, bias ? 1 : 0);
    const weights = activation === 'prelu' && prelu ? memory.view(prelu) : null;
    activate(c, activation as Activation, plan.n, leakyreluAlpha, weights);
    return out;
  };
}

// ---- registration --------------------------------------------------------------------------------

interface Installed {
  stock: KernelConfig[];
  ours: KernelConfig[];
}
const installed = new Map<NativeBackendName, Installed>();

/**
 * Puts the native kernels in place of the registered ones for `backendName`, keeping those to fall
 * back on and to restore. False where the backend's kernels are not registered (its package not
 * loaded). Idempotent.
 */
export function installNativeKernels(backendName: NativeBackendName, settings: KernelSettings): boolean {
  if (nativeKernelsActive(backendName)) return true;
  const stock = KERNEL_NAMES.map((name) => tf.getKernel(name, backendName) as KernelConfig | undefined);
  if (stock.some((s) => !s)) return false;
  const [bmm, fused] = stock as KernelConfig[];
  const ours: KernelConfig[] = [
    { ...bmm, kernelFunc: batchMatMulKernel(backendName, bmm.kernelFunc, settings) },
    { ...fused, kernelFunc: fusedMatMulKernel(backendName, fused.kernelFunc, settings) },
  ];
  // Same setupFunc/disposeFunc: the engine runs setupFunc on every setBackend, and the stock
  // kernelFunc we fall back on needs it.
  for (const config of ours) {
    tf.unregisterKernel(config.kernelName, backendName);
    tf.registerKernel(config);
  }
  installed.set(backendName, { stock: stock as KernelConfig[], ours });
  return true;
}

/** Puts the kept stock kernels back (only where ours are still the registered ones). */
export function restoreStockKernels(backendName: NativeBackendName): void {
  const entry = installed.get(backendName);
  if (!entry) return;
  entry.ours.forEach((ours, i) => {
    if (tf.getKernel(ours.kernelName, backendName)?.kernelFunc !== ours.kernelFunc) return;
    tf.unregisterKernel(ours.kernelName, backendName);
    tf.registerKernel(entry.stock[i]);
  });
  installed.delete(backendName);
}

/** Whether the kernels registered for `backendName` right now are ours. */
export function nativeKernelsActive(backendName: string): boolean {
  const entry = installed.get(backendName as NativeBackendName);
  return !!entry && entry.ours.every((ours) => tf.getKernel(ours.kernelName, backendName)?.kernelFunc === ours.kernelFunc);
}
