/**
 * Optional native matrix multiply: tf.matMul (BatchMatMul) and tf.fused.matMul (_FusedMatMul) on
 * OpenBLAS sgemm through the `nblas` package, for the wasm and cpu backends. The model code is
 * unchanged; this only registers kernels. Without nblas everything runs on the stock kernels, and
 * `nativeMatmulNotice()` gives the one line that says so.
 *
 * setBackend (src/backend.ts) turns it on by default; `VIDEO_LLAVA_NATIVE=0` or `{ native: false }`
 * turns it off. Threads: `threads` option or VIDEO_LLAVA_BLAS_THREADS, else OpenBLAS's default (all
 * cores; OPENBLAS_NUM_THREADS is honoured too). The count is fixed when the library first loads. The
 * wasm backend runs single-threaded in Node and waits while sgemm runs, so OpenBLAS threads do not
 * compete with it; what can compete is other work in the process or on the machine (jest's parallel
 * workers, a second model process, ffmpeg decoding), where 1 thread per process is the better choice.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendName } from '../backend';
import { InputError } from '../errors';
import { ADDON_MODULE, NBLAS_MODULE, loadBlas, resolveBlasThreads } from './blas';
import { nativeAddon } from './addon';
import { KernelSettings, NATIVE_BACKENDS, NativeBackendName, installNativeKernels, nativeKernelsActive, restoreStockKernels } from './kernels';

export { THREADS_ENV } from './blas';
export const NATIVE_ENV = 'VIDEO_LLAVA_NATIVE';

/**
 * Below this many multiply-adds (m·n·k) in one sgemm call the stock kernel runs instead. Measured on
 * the wasm backend (benchmarks/matmul.ts, 2 cores): one native call costs about 2.5 µs; from 512 = 8³
 * on, native ties or wins (8³: 2.8 vs 6.3 µs; [128,8,8]²: 34 vs 62 µs; decode q·kᵀ [32,1,64]·[32,8,64]ᵀ:
 * 14 vs 13 µs), while below it the per-call overhead loses ([128,4,4]²: 33 vs 14 µs).
 */
export const DEFAULT_MIN_MACS = 512;

export interface NativeMatmulOptions {
  /** OpenBLAS threads (positive integer). Default VIDEO_LLAVA_BLAS_THREADS, else OpenBLAS decides. */
  threads?: number;
  /**
   * The BLAS: 'video-llava-addon' (this package's addon: its AVX-512 GEMM), 'nblas' (OpenBLAS), or a module path,
   * e.g. to test the fallback. Default VIDEO_LLAVA_BLAS, else the addon where it has AVX-512 kernels, else nblas.
   */
  library?: string;
  /** GEMMs of fewer multiply-adds than this per sgemm call use the stock kernel. Default DEFAULT_MIN_MACS. */
  minMacs?: number;
}

export interface NativeMatmulStatus {
  /** Native kernels are registered (for every backend whose kernels were loaded). */
  enabled: boolean;
  /** One line: what runs and why, or why not. */
  reason: string;
  /** The native library, e.g. "nblas 2.1.13 on …/libopenblasp-r0.3.21.so"; null if none loaded. */
  library: string | null;
  /** OpenBLAS threads; null if no library loaded. */
  threads: number | null;
  /** What tf.matMul runs now: 'native', or the current backend's own kernel; null before any backend. */
  path: 'native' | BackendName | null;
  minMacs: number;
  /** matMul kernel calls served natively and handed to the stock kernel since enabling. */
  calls: { native: number; stock: number };
}

interface State {
  enabled: boolean;
  reason: string;
  library: string | null;
  threads: number | null;
  /** Set when enabling was tried and failed: the line for the CLI. */
  notice: string | null;
}

const state: State = { enabled: false, reason: 'not enabled', library: null, threads: null, notice: null };
let settings: KernelSettings | null = null;

/** Loads nblas (once) and registers the native kernels. Never throws for a missing library. */
export function enableNativeMatmul(options: NativeMatmulOptions = {}): NativeMatmulStatus {
  const minMacs = resolveMinMacs(options.minMacs);
  const threads = resolveBlasThreads(options.threads);
  const library = options.library ?? defaultLibrary();
  const load = loadBlas(library, threads);
  if (!load.ok) {
    restoreAll();
    const line = `native matmul off: ${load.reason}; using the stock kernels`;
    Object.assign(state, { enabled: false, reason: line, library: null, threads: null, notice: line });
    return nativeMatmulStatus();
  }
  const { blas } = load;
  if (!state.enabled || !settings) settings = { sgemm: blas.sgemm, sgemv: blas.sgemv, minMacs, counts: { native: 0, stock: 0 } };
  settings.sgemm = blas.sgemm;
  settings.sgemv = blas.sgemv;
  settings.minMacs = minMacs;
  const backends = NATIVE_BACKENDS.filter((name) => installNativeKernels(name, settings as KernelSettings));
  const fixed = threads !== undefined && threads !== blas.threads ? `; ${threads} threads asked for, but OpenBLAS was loaded earlier with ${blas.threads}` : '';
  const where = backends.length > 0 ? `for matMul on ${backends.join(' and ')}` : 'loaded, but no wasm or cpu kernels are registered yet';
  const reason = `native sgemm (${blas.library}, ${blas.threads} thread${blas.threads === 1 ? '' : 's'}) ${where}${fixed}`;
  Object.assign(state, { enabled: backends.length > 0, reason, library: blas.library, threads: blas.threads, notice: null });
  return nativeMatmulStatus();
}

/** Puts the stock kernels back. The library stays loaded (it cannot be unloaded). */
export function disableNativeMatmul(reason = 'disabled by disableNativeMatmul()'): NativeMatmulStatus {
  restoreAll();
  Object.assign(state, { enabled: false, reason: `native matmul off: ${reason}`, notice: null });
  return nativeMatmulStatus();
}

export function nativeMatmulStatus(): NativeMatmulStatus {
  const backend = (tf.getBackend() as BackendName | undefined) ?? null;
  return {
    enabled: state.enabled,
    reason: state.reason,
    library: state.library,
    threads: state.threads,
    path: backend && nativeKernelsActive(backend) ? 'native' : backend,
    minMacs: settings?.minMacs ?? DEFAULT_MIN_MACS,
    calls: { ...(settings?.counts ?? { native: 0, stock: 0 }) },
  };
}

/** The line a command-line tool prints when native matmul was wanted but could not load; else null. */
export function nativeMatmulNotice(): string | null {
  return state.notice;
}

/** The option, else VIDEO_LLAVA_NATIVE (0/1, false/true, off/on, no/yes), else on. */
export function nativeMatmulWanted(option?: boolean): boolean {
  if (option !== undefined) return option;
  const raw = process.env[NATIVE_ENV];
  if (raw === undefined || raw.trim() === '') return true;
  const value = raw.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(value)) return true;
  if (['0', 'false', 'off', 'no'].includes(value)) return false;
  throw new InputError(NATIVE_ENV, `expected 0 or 1 (or false/true, off/on), found "${raw}"`);
}

/** setBackend's step: enable or disable as the option or VIDEO_LLAVA_NATIVE says (default on). */
export function configureNativeMatmul(option?: boolean): NativeMatmulStatus {
  if (nativeMatmulWanted(option)) return enableNativeMatmul({ minMacs: settings?.minMacs });
  return disableNativeMatmul(option === false ? 'option native: false' : `${NATIVE_ENV}=${process.env[NATIVE_ENV]}`);
}

export const BLAS_ENV = 'VIDEO_LLAVA_BLAS';

/**
 * The addon's own GEMM where it runs AVX-512 kernels (twice OpenBLAS's forced-Haswell kernels on this project's
 * machines: benchmarks/RESULTS.md), else OpenBLAS through nblas. VIDEO_LLAVA_BLAS=openblas|addon overrides.
 */
function defaultLibrary(): string {
  const env = process.env[BLAS_ENV]?.trim().toLowerCase();
  if (env === 'openblas' || env === 'nblas') return NBLAS_MODULE;
  if (env === 'addon') return ADDON_MODULE;
  if (env) throw new InputError(BLAS_ENV, `expected "addon" or "openblas", found "${process.env[BLAS_ENV]}"`);
  const addon = nativeAddon();
  const isa = addon?.features().isa;
  return isa === 'avx512' || isa === 'amx' ? ADDON_MODULE : NBLAS_MODULE;
}

function resolveMinMacs(option: number | undefined): number {
  const value = option ?? settings?.minMacs ?? DEFAULT_MIN_MACS;
  if (!Number.isFinite(value) || value < 0) {
    throw new InputError('minMacs', `expected a non-negative number of multiply-adds, found ${value}`);
  }
  return value;
}

function restoreAll(): void {
  for (const name of NATIVE_BACKENDS) restoreStockKernels(name as NativeBackendName);
}
