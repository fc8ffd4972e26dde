/**
 * The package's own native addon (native/: C, N-API), built at `npm install` when a C toolchain is present
 * (scripts/build-addon.js) and optional everywhere: without it every product still runs (src/native/
 * stored_matmul.ts widens blocks of the weight into the tensor heap instead) and `addonNotice()` is the one line
 * that says so.
 *
 * It multiplies float32 activations with weights in their stored format (float32, bfloat16, float16) without a
 * float32 copy of the weight, on the best kernels this CPU has (AMX, AVX-512, else portable C, chosen at run
 * time; AVX2 on CPUs without AVX-512), on its own thread pool; and maps safetensors files into memory.
 *
 * Environment: VIDEO_LLAVA_ADDON=0 does not load it; VIDEO_LLAVA_THREADS sets its threads (default: all cores);
 * VIDEO_LLAVA_ISA=portable|avx2|avx512 caps the kernel family (to compare paths).
 */
import * as fs from 'fs';
import * as path from 'path';
import { InputError } from '../errors';

export type Isa = 'portable' | 'avx2' | 'avx512' | 'amx';
export const ISAS: readonly Isa[] = ['portable', 'avx2', 'avx512', 'amx'];
export const ADDON_ENV = 'VIDEO_LLAVA_ADDON';
export const ISA_ENV = 'VIDEO_LLAVA_ISA';

export { FORMAT_CODES, COMPUTE_CODES } from './codes';
export type { NativeFormat, ComputeDType } from './codes';

export interface AddonFeatures {
  avx2: boolean;
  avx512: boolean;
  avx512bf16: boolean;
  amx: boolean;
  cores: number;
  threads: number;
  /** The kernel family in use, and the best this CPU allows. */
  isa: Isa;
  bestIsa: Isa;
}

type Floats = Float32Array;
type Stored = Float32Array | Uint16Array | Uint8Array | Int8Array;

export interface NativeAddon {
  features(): AddonFeatures;
  setIsa(isa: Isa): Isa;
  setThreads(n: number): number;
  /**
   * C[M][N] = beta·C + op(A)·B with B(k, n) = b[n·ldb + k] when transB (a weight [N][K] used as Wᵀ), else
   * b[k·ldb + n]; `format` is B's FORMAT_CODES entry, `compute` a COMPUTE_CODES entry.
   */
  gemm(
    M: number,
    N: number,
    K: number,
    a: Floats,
    lda: number,
    transA: boolean,
    format: number,
    b: Stored,
    ldb: number,
    transB: boolean,
    c: Floats,
    ldc: number,
    beta: number,
    compute: number,
  ): void;
  /**
   * gemm with a bitsandbytes-format weight (FORMAT_CODES.q4: packed nibbles, one scale per `block` values of the
   * flattened weight, the 16-entry `code`, values rounded to `round` (a FORMAT_CODES float entry); FORMAT_CODES.int8:
   * int8 codes, one scale (SCB) per storage row). B's storage is dense: ldb = its row length.
   */
  gemmQuant(
    M: number,
    N: number,
    K: number,
    a: Floats,
    lda: number,
    transA: boolean,
    format: number,
    b: Uint8Array | Int8Array,
    ldb: number,
    transB: boolean,
    scales: Float32Array,
    code: Float32Array,
    block: number,
    round: number,
    c: Floats,
    ldc: number,
    beta: number,
    compute: number,
  ): void;
  /**
   * bitsandbytes' 4-bit quantization of `blocks` whole blocks of `x` (src/quantization/fourbit.ts: the same float32
   * operations): absmax per block into `absmax`, two codes a byte into `packed`; `bounds` are the 15 sorted midpoints
   * of the code table and `order` maps a rank to its code. `x` holds float32 values, or bfloat16 ones as their bits
   * (widened a block at a time). Returns -1, or (bfloat16) the first index of a value that is not finite.
   */
  quantize4bit(x: Float32Array | Uint16Array, blocks: number, block: number, bounds: Float32Array, order: Uint8Array, absmax: Float32Array, packed: Uint8Array): number;
  /**
   * bitsandbytes' 8-bit quantization of a [rows][cols] matrix (src/quantization/int8.ts: the same float32
   * operations) of float32 values or bfloat16 bits into `codes` and `scb`; returns [the first index of a value that is
   * not finite, the first that overflows float16], each -1 if none.
   */
  quantizeInt8(x: Float32Array | Uint16Array, rows: number, cols: number, codes: Int8Array, scb: Float32Array): [number, number];
  /**
   * softmax(q·kᵀ·scale + mask)·v for every (batch, head) into `out` (src/native/attention.ts): q and out [B, H, Lq, D],
   * keys[i] and values[i] consecutive blocks [B, Hkv, len_i, D] along the key axis, mask null or additive with element
   * strides for batch, head and query row (0 broadcasts) and the keys contiguous. False where it does not apply
   * (no AVX-512; D not a multiple of 16 up to 128).
   */
  attention(
    q: Float32Array,
    keys: Float32Array[],
    values: Float32Array[],
    B: number,
    H: number,
    Hkv: number,
    Lq: number,
    D: number,
    scale: number,
    mask: Float32Array | null,
    maskBatchStride: number,
    maskHeadStride: number,
    maskRowStride: number,
    out: Float32Array,
  ): boolean;
  /** Rows [r0, r1) of a [rows][cols] matrix of `format` widened into dst. */
  widenRows(format: number, data: Stored, cols: number, r0: number, r1: number, dst: Floats): void;
  /** -1, or the first index of `x` that is not finite or (format FORMAT_CODES.bfloat16) not a bfloat16 value. */
  firstUnrepresentable(x: Float32Array, format: number): number;
  /** Bytes [offset, offset + length) of a file, privately memory-mapped (no copy). */
  mapFile(file: string, offset: number, length: number): ArrayBuffer;
  /** Releases a mapping now; views of it read as empty afterwards. */
  unmap(buffer: ArrayBuffer): void;
  /** Main-memory read rate of all the addon's threads over a buffer of `bytes`, in bytes per second (best of `repeats`). */
  readBandwidth(bytes: number, repeats: number): number;
  /** oneDNN's sgemm (row-major, alpha 1) where libdnnl is installed, for the benchmarks; false when it is not. */
  dnnlSgemm(M: number, N: number, K: number, a: Floats, lda: number, transA: boolean, b: Floats, ldb: number, transB: boolean, c: Floats, ldc: number, beta: number): boolean;
}

type Load = { ok: true; addon: NativeAddon; file: string } | { ok: false; reason: string };
let loaded: Load | null = null;

/** Where node-gyp puts the addon: under the package root, found upwards from src/native, dist/native or a bench build. */
export const ADDON_FILE = (() => {
  const relative = path.join('native', 'build', 'Release', 'video_llava_native.node');
  let dir = __dirname;
  for (let up = 0; up < 4; up++) {
    dir = path.dirname(dir);
    if (fs.existsSync(path.join(dir, 'native', 'binding.gyp'))) return path.join(dir, relative);
  }
  return path.join(__dirname, '..', '..', relative);
})();

function load(): Load {
  const env = process.env[ADDON_ENV];
  if (env !== undefined && ['0', 'false', 'off', 'no'].includes(env.trim().toLowerCase())) {
    return { ok: false, reason: `${ADDON_ENV}=${env}` };
  }
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(ADDON_FILE) as NativeAddon;
  } catch (e) {
    const why = String((e as { message?: unknown })?.message ?? e).split('\n')[0];
    return { ok: false, reason: /Cannot find module/.test(why) ? 'not built (npm install compiles it where a C toolchain is present: see README)' : why };
  }
  const isa = process.env[ISA_ENV];
  if (isa !== undefined && isa.trim() !== '') {
    if (!(ISAS as readonly string[]).includes(isa.trim())) throw new InputError(ISA_ENV, `expected one of ${ISAS.join(', ')}, found "${isa}"`);
    addon.setIsa(isa.trim() as Isa);
  }
  return { ok: true, addon, file: ADDON_FILE };
}

/** The addon, or null where it is not built or turned off (addonNotice() says which). */
export function nativeAddon(): NativeAddon | null {
  loaded ??= load();
  return loaded.ok ? loaded.addon : null;
}

/** One line for a command-line tool when the addon is not in use; null when it is. */
export function addonNotice(): string | null {
  loaded ??= load();
  return loaded.ok ? null : `native weight kernels off (${loaded.reason}): 16-bit weights are widened block by block in the tensor heap (slower)`;
}

/** "amx, 2 threads" — for summaries; null without the addon. */
export function addonDescription(): string | null {
  const addon = nativeAddon();
  if (!addon) return null;
  const f = addon.features();
  return `${f.isa}, ${f.threads} thread${f.threads === 1 ? '' : 's'}`;
}
