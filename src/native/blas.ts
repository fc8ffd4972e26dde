/**
 * The optional native BLAS: the `nblas` package (CBLAS bindings that node-gyp builds against the
 * system libblas, which is OpenBLAS where libopenblas-dev is installed). Only sgemm is used.
 *
 * Zero copy: nblas's C++ takes each Float32Array as `view->Buffer()`'s backing store plus
 * `view->ByteOffset()` (nblas/lib/routines.h, GET_CONTENTS) and hands lda/ldb/ldc to row-major
 * cblas_sgemm as given, so a view over part of the wasm heap (or of any larger buffer) is read and
 * written in place.
 *
 * Threads: nblas has no openblas_set_num_threads, and OpenBLAS reads OPENBLAS_NUM_THREADS once, when
 * the library is loaded. So a requested count goes into the process environment just before the first
 * require and stays fixed for the life of the process.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as vm from 'vm';
import { InputError } from '../errors';
import { FORMAT_CODES, addonNotice, nativeAddon } from './addon';
import { NO_TRANS, TRANS } from './codes';

export { NO_TRANS, TRANS } from './codes';

/** Row-major cblas_sgemm: C = alpha·op(A)·op(B) + beta·C, op(X) = X or Xᵀ. */
export type Sgemm = (
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

/** Row-major cblas_sgemv: y = alpha·op(A)·x + beta·y, A stored m×n. */
export type Sgemv = (
  trans: number,
  m: number,
  n: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  x: Float32Array,
  incX: number,
  beta: number,
  y: Float32Array,
  incY: number,
) => void;

export interface NativeBlas {
  readonly sgemm: Sgemm;
  /** For products with one row or one column: memory-bound, and OpenBLAS's sgemv is ~2× its sgemm there. */
  readonly sgemv: Sgemv | null;
  /** e.g. "nblas 2.1.13 on /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so". */
  readonly library: string;
  /** OpenBLAS threads: counted when this call loaded the library, else read from the environment. */
  readonly threads: number;
}

export type BlasLoad = { ok: true; blas: NativeBlas } | { ok: false; reason: string };

export const NBLAS_MODULE = 'nblas';
/** The package's own addon (src/native/addon.ts) as the BLAS: its float32 GEMM, on the kernels this CPU has. */
export const ADDON_MODULE = 'video-llava-addon';
export const THREADS_ENV = 'VIDEO_LLAVA_BLAS_THREADS';

/**
 * The real process environment. Under a test runner that sandboxes `process` (jest gives each test file
 * a copy of process.env), writes to the copy never reach getenv(), which is what OpenBLAS reads.
 */
function realEnv(): NodeJS.ProcessEnv {
  return (vm.runInThisContext('process') as NodeJS.Process).env;
}

/** Threads to request: the option, else VIDEO_LLAVA_BLAS_THREADS, else none (OpenBLAS decides). */
export function resolveBlasThreads(option?: number): number | undefined {
  if (option !== undefined) return positiveInt(option, 'threads', String(option));
  const raw = process.env[THREADS_ENV];
  if (raw === undefined || raw.trim() === '') return undefined;
  return positiveInt(Number(raw.trim()), THREADS_ENV, raw);
}

function positiveInt(value: number, argument: string, raw: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InputError(argument, `expected a positive integer number of BLAS threads, found "${raw}"`);
  }
  return value;
}

const loads = new Map<string, BlasLoad>();

/**
 * Loads `moduleId` (default nblas) once per process and checks its sgemm on a 2×2 product. Never
 * throws for a missing or broken library: the reason comes back instead.
 */
export function loadBlas(moduleId: string = NBLAS_MODULE, threads?: number): BlasLoad {
  if (moduleId === ADDON_MODULE) return loadAddonBlas(threads); // its thread count can change at any time
  const cached = loads.get(moduleId);
  if (cached) return cached;
  const result = load(moduleId, threads);
  loads.set(moduleId, result);
  return result;
}

/** The addon's gemm with cblas_sgemm's row-major contract (alpha must be 1: the only value the kernels use). */
function loadAddonBlas(threads: number | undefined): BlasLoad {
  const addon = nativeAddon();
  if (!addon) return { ok: false, reason: addonNotice() ?? 'the video-llava addon is not loaded' };
  if (threads !== undefined) addon.setThreads(threads);
  const f32 = FORMAT_CODES.float32;
  const sgemm: Sgemm = (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
    if (alpha !== 1) throw new InputError('alpha', `the addon's sgemm computes alpha = 1 only, found ${alpha}`);
    addon.gemm(m, n, k, a, lda, transA === TRANS, f32, b, ldb, transB === TRANS, c, ldc, beta, 0);
  };
  const check = selfCheck(sgemm);
  if (check) return { ok: false, reason: `${ADDON_MODULE}: ${check}` };
  const f = addon.features();
  // sgemv: the addon's GEMM already takes single rows on its memory-bound kernels.
  return { ok: true, blas: { sgemm, sgemv: null, library: `${ADDON_MODULE} (${f.isa})`, threads: f.threads } };
}

function load(moduleId: string, threads: number | undefined): BlasLoad {
  if (moduleId === ADDON_MODULE) return loadAddonBlas(threads);
  const env = realEnv();
  const fresh = !mappedLibraries().some((p) => p.endsWith('nblas.node'));
  if (threads !== undefined && fresh) env.OPENBLAS_NUM_THREADS = String(threads);
  const before = threadCount();
  let mod: { sgemm?: unknown; sgemv?: unknown };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(moduleId);
  } catch (e) {
    return { ok: false, reason: `cannot load ${moduleId}: ${firstLine(e)}` };
  }
  const after = threadCount();
  if (typeof mod.sgemm !== 'function') return { ok: false, reason: `${moduleId} has no sgemm function` };
  const sgemm = mod.sgemm as Sgemm;
  const check = selfCheck(sgemm);
  if (check) return { ok: false, reason: `${moduleId}: ${check}` };
  const sgemv = typeof mod.sgemv === 'function' && gemvWorks(mod.sgemv as Sgemv) ? (mod.sgemv as Sgemv) : null;
  const counted = fresh && before !== null && after !== null ? after - before + 1 : null;
  return {
    ok: true,
    blas: { sgemm, sgemv, library: libraryName(moduleId), threads: Math.max(1, counted ?? envThreads(env)) },
  };
}

/** [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]], written at an offset so that views are exercised. */
function selfCheck(sgemm: Sgemm): string | null {
  const buf = new Float32Array(16);
  buf.set([1, 2, 3, 4, 5, 6, 7, 8], 4);
  try {
    sgemm(NO_TRANS, NO_TRANS, 2, 2, 2, 1, buf.subarray(4, 8), 2, buf.subarray(8, 12), 2, 0, buf.subarray(12, 16), 2);
  } catch (e) {
    return `sgemm failed its self-check: ${firstLine(e)}`;
  }
  const got = Array.from(buf.subarray(12, 16));
  const want = [19, 22, 43, 50];
  return got.every((v, i) => v === want[i]) ? null : `sgemm self-check gave [${got}], expected [${want}]`;
}

/** [[1,2],[3,4]]·[5,6] = [17,39]; an sgemv that fails this is not used (sgemm serves instead). */
function gemvWorks(sgemv: Sgemv): boolean {
  const buf = new Float32Array(8);
  buf.set([1, 2, 3, 4, 5, 6]);
  try {
    sgemv(NO_TRANS, 2, 2, 1, buf.subarray(0, 4), 2, buf.subarray(4, 6), 1, 0, buf.subarray(6, 8), 1);
  } catch {
    return false;
  }
  return buf[6] === 17 && buf[7] === 39;
}

/** What OpenBLAS reads at load: OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS, else all cores. */
function envThreads(env: NodeJS.ProcessEnv): number {
  for (const name of ['OPENBLAS_NUM_THREADS', 'GOTO_NUM_THREADS', 'OMP_NUM_THREADS']) {
    const n = Number(env[name]);
    if (Number.isSafeInteger(n) && n > 0) return Math.min(n, os.availableParallelism());
  }
  return os.availableParallelism();
}

function libraryName(moduleId: string): string {
  let name = moduleId;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pkg = require(`${moduleId}/package.json`) as { name?: string; version?: string };
    if (pkg.name && pkg.version) name = `${pkg.name} ${pkg.version}`;
  } catch {
    // a module path without a package.json: keep the id
  }
  const libs = mappedLibraries().filter((p) => /blas/i.test(p) && !p.endsWith('.node'));
  const lib = libs.find((p) => /openblas/i.test(p)) ?? libs[0];
  return lib ? `${name} on ${lib}` : name;
}

/** Shared objects mapped into this process (Linux); empty elsewhere. */
function mappedLibraries(): string[] {
  try {
    const paths = fs
      .readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((line) => line.split(/\s+/)[5] ?? '')
      .filter((p) => p.includes('.so') || p.endsWith('.node'));
    return [...new Set(paths)];
  } catch {
    return [];
  }
}

function threadCount(): number | null {
  try {
    return fs.readdirSync('/proc/self/task').length;
  } catch {
    return null;
  }
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}
