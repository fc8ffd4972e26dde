/**
 * The TypeScript worker: holds one model on one tfjs backend and answers the requests of protocol.ts.
 *
 *   node .bench-build/benchmarks/tfjs_bench.js [--backend wasm|cpu] [--native]
 *   node .bench-build/benchmarks/tfjs_bench.js --experiment heap-ceiling      (one-shot, prints JSON)
 *
 * --native turns on the native-BLAS matmul through `enableNativeMatmul()` if some module under
 * src/native/ exports it (looked up at run time, so this file builds whether or not it exists); threads
 * from VIDEO_LLAVA_BLAS_THREADS. Without --native the worker sets VIDEO_LLAVA_NATIVE=0, so it measures
 * the stock wasm kernels even where setBackend would turn the native ones on.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { useHeadByHead } from '../src/layers/attention';
import { setBackend } from '../src/backend';
import { loadVideoLlava } from '../src/models/video_llava/loading';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';
import { Checkpoint } from '../src/weights/checkpoint';
import { decodeBFloat16, decodeFloat16 } from '../src/weights/dtype';
import { benchInput } from './inputs';
import { Prepared, prepareStage, runPrepared } from './stages';
import {
  GemmResult,
  Hello,
  LoadResult,
  MemoryResult,
  REPLY_PREFIX,
  Request,
  RunResult,
  StageSpec,
  StatsResult,
} from './protocol';
import { procMemory, resetPeakRss } from './stats';

const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Optional native pieces, found at run time

const NATIVE_DIR = path.join(__dirname, '..', 'src', 'native');

/** Every compiled module under src/native/ (there may be none yet). */
function nativeModules(): Array<{ file: string; mod: Record<string, unknown> }> {
  if (!fs.existsSync(NATIVE_DIR)) return [];
  const out: Array<{ file: string; mod: Record<string, unknown> }> = [];
  for (const f of fs.readdirSync(NATIVE_DIR).filter((f) => f.endsWith('.js')).sort()) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      out.push({ file: f, mod: require(path.join(NATIVE_DIR, f)) as Record<string, unknown> });
    } catch (e) {
      log(`cannot load src/native/${f}: ${String(e).split('\n')[0]}`);
    }
  }
  return out;
}

/**
 * The column hook: calls enableNativeMatmul() where a module under src/native exports it, and reads back
 * whether it took (it returns a status object with `enabled` and `reason`).
 */
async function enableNative(): Promise<{ enabled: boolean; detail: string }> {
  const found = nativeModules().find(({ mod }) => typeof mod.enableNativeMatmul === 'function');
  if (!found) return { enabled: false, detail: 'no module under src/native exports enableNativeMatmul()' };
  const where = `src/native/${found.file}`;
  try {
    const ret = (await (found.mod.enableNativeMatmul as () => unknown)()) as { enabled?: boolean; ok?: boolean; reason?: string } | boolean | undefined;
    if (ret === false) return { enabled: false, detail: `${where}: enableNativeMatmul() returned false` };
    if (ret && typeof ret === 'object' && (ret.enabled === false || ret.ok === false)) return { enabled: false, detail: `${where}: ${ret.reason ?? 'not enabled'}` };
    const reason = ret && typeof ret === 'object' && ret.reason ? ret.reason : 'enabled';
    return { enabled: true, detail: `${where}: ${reason}` };
  } catch (e) {
    return { enabled: false, detail: `${where}: enableNativeMatmul() threw ${String(e).split('\n')[0]}` };
  }
}

/** Native matmul calls served natively / by the stock kernel so far, where src/native reports them. */
function nativeCalls(): { native: number; stock: number } | undefined {
  const found = nativeModules().find(({ mod }) => typeof mod.nativeMatmulStatus === 'function');
  const status = found ? ((found.mod.nativeMatmulStatus as () => { calls?: { native: number; stock: number } })() ?? {}) : {};
  return status.calls;
}

// ---------------------------------------------------------------------------------------------------
// Worker state

function log(msg: string): void {
  process.stderr.write(`[tfjs] ${msg}\n`);
}

function wasmHeapMB(): number | undefined {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8 ? b.wasm.HEAPU8.byteLength / MB : undefined;
}

let lifetimePeakMB = 0;
/** resetPeakRss, remembering the high-water mark it throws away. */
function resetPeak(): void {
  lifetimePeakMB = Math.max(lifetimePeakMB, procMemory().hwmMB);
  resetPeakRss();
}

let model: VideoLlavaForConditionalGeneration | null = null;
const stages = new Map<string, Prepared>();

function needModel(): VideoLlavaForConditionalGeneration {
  if (!model) throw new Error('no model loaded: send "load" first');
  return model;
}

function prepare(stage: StageSpec): Prepared {
  return prepareStage(needModel(), stage);
}

function runStage(key: string, minMs: number): Promise<RunResult> {
  const s = stages.get(key);
  if (!s) throw new Error(`stage ${key} was not prepared`);
  return runPrepared(s, minMs);
}

async function memoryOf(key: string): Promise<MemoryResult> {
  const s = stages.get(key);
  if (!s) throw new Error(`stage ${key} was not prepared`);
  const before = tf.memory().numBytes;
  resetPeak();
  const rss0 = procMemory().rssMB;
  let ms = 0;
  const info = await tf.profile(() => {
    s.before?.();
    const t0 = performance.now();
    const y = s.run();
    y.dataSync();
    ms = performance.now() - t0;
    y.dispose();
    s.after?.();
  });
  return {
    ms,
    peakTensorMB: (info.peakBytes - before) / MB,
    stagePeakRssDeltaMB: procMemory().hwmMB - rss0,
    wasmHeapMB: wasmHeapMB(),
  };
}

async function load(dir: string): Promise<LoadResult> {
  if (model) throw new Error('a model is already loaded');
  (globalThis as { gc?: () => void }).gc?.();
  const rssBefore = procMemory().rssMB;
  resetPeak();
  const t0 = performance.now();
  let bytes = 0;
  model = await loadVideoLlava(dir, { onProgress: (p) => (bytes = p.bytesTotal) });
  const ms = performance.now() - t0;
  const { rssMB, hwmMB } = procMemory();
  return { ms, bytes, rssBeforeMB: rssBefore, rssPeakMB: hwmMB, rssAfterMB: rssMB, wasmHeapMB: wasmHeapMB(), tensorMB: tf.memory().numBytes / MB };
}

// ---------------------------------------------------------------------------------------------------
// GEMM roofline

function gemm(r: Extract<Request, { cmd: 'gemm' }>): GemmResult {
  const { batch, m, k, n } = r;
  const flops = 2 * batch * m * k * n;
  let operands: tf.Tensor[];
  let product: () => tf.Tensor[];
  if (batch === 1) {
    // a Linear: the weight is stored [in, out], so x·W with no transpose (Parameter.layout)
    const a = tf.randomUniform([m, k], -1, 1, 'float32', 1);
    const b = tf.randomUniform([k, n], -1, 1, 'float32', 2);
    operands = [a, b];
    product = () => [tf.matMul(a, b)];
  } else if (useHeadByHead({ shape: [1, batch, m, k] }, { shape: [1, batch, n, k] })) {
    // attention on stock wasm: one [m, k]·[k, n] product per head (kᵀ is laid out once per call, not timed)
    const as = Array.from({ length: batch }, (_, i) => tf.randomUniform([m, k], -1, 1, 'float32', 1 + 2 * i));
    const bs = Array.from({ length: batch }, (_, i) => tf.randomUniform([k, n], -1, 1, 'float32', 2 + 2 * i));
    operands = [...as, ...bs];
    product = () => as.map((a, i) => tf.matMul(a, bs[i]));
  } else {
    const a = tf.randomUniform([batch, m, k], -1, 1, 'float32', 1);
    const b = tf.randomUniform(r.transB ? [batch, n, k] : [batch, k, n], -1, 1, 'float32', 2);
    operands = [a, b];
    product = () => [tf.matMul(a, b, false, r.transB)];
  }
  const once = () => {
    const t0 = performance.now();
    const out = product();
    for (const c of out) c.dataSync();
    const ms = performance.now() - t0;
    tf.dispose(out);
    return ms;
  };
  try {
    return timeRepeats(once, r.repeats, flops);
  } finally {
    tf.dispose(operands);
  }
}

/** One warm-up, then `repeats` timed runs (only one when the warm-up took over 2 s). */
function timeRepeats(once: () => number, repeats: number, flops: number): GemmResult {
  const warm = once();
  const count = warm > 2000 ? 1 : repeats;
  const ms: number[] = [];
  for (let i = 0; i < count; i++) ms.push(once());
  return { ms, gflops: flops / Math.min(...ms) / 1e6 };
}

// ---------------------------------------------------------------------------------------------------
// Memory experiments (numbers behind running the 7B on a 24 GB machine)

/**
 * Allocates 64 MiB tensors (tensor i filled with i + 1) until the wasm heap refuses: the usable tensor
 * capacity of the backend. Also records how it refuses: tfjs-backend-wasm 4.22 does not check malloc's
 * result, so the allocation that no longer fits gets address 0 and its data is written over the start
 * of the heap (the first tensor, and the module's static data below it) without any error.
 */
function heapCeiling(): Record<string, unknown> {
  const chunk = 16 * MB; // floats
  const held: tf.Tensor[] = [];
  const backend = tf.backend() as unknown as { dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined } };
  const address = (t: tf.Tensor) => (backend.dataIdMap?.get(t.dataId)?.memoryOffset ?? -1) >>> 0;
  let error = '';
  for (let i = 0; i < 200; i++) {
    try {
      const t = tf.tensor(new Float32Array(chunk).fill(i + 1), [chunk], 'float32');
      held.push(t);
      if (address(t) === 0) break; // written over the start of the heap: stop here
    } catch (e) {
      error = String(e).split('\n')[0];
      break;
    }
  }
  const atZero = held.findIndex((t) => address(t) === 0);
  const good = atZero < 0 ? held.length : atZero;
  const firstValue = held.length ? (held[0].dataSync() as Float32Array)[0] : NaN;
  const result = {
    tensorBytes: good * chunk * 4,
    tensors: good,
    nullAddressTensor: atZero < 0 ? null : atZero,
    firstTensorFirstValue: firstValue, // 1 if intact
    wasmHeapMB: wasmHeapMB(),
    rssMB: procMemory().rssMB,
    error: error || (atZero >= 0 ? 'none thrown: the allocation got address 0 silently' : ''),
  };
  tf.dispose(held);
  return result;
}

/** Reads every tensor whose key starts with `prefix` into tfjs tensors (what the loader does), and frees them. */
async function streamLayer(dir: string, prefix: string, repeats: number): Promise<Record<string, unknown>> {
  const ckpt = await Checkpoint.open(dir);
  try {
    const names = ckpt.keys().filter((k) => k.startsWith(prefix));
    const bytes = names.reduce((s, k) => s + ckpt.info(k).byteLength, 0);
    const ms: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      const ts: tf.Tensor[] = [];
      for (const k of names) ts.push(await ckpt.readTensor(k));
      ms.push(performance.now() - t0);
      tf.dispose(ts);
    }
    return { tensors: names.length, bytes, ms, mbPerS: bytes / MB / (Math.min(...ms) / 1000) };
  } finally {
    await ckpt.close();
  }
}

/**
 * int8 weights with dequantize-on-the-fly: per output row, q = round(w / s), s = max|w| / 127. For each
 * shape: the time to widen the int8 rows into float32, in the checkpoint's [out, in] order (contiguous)
 * and transposed to [in, out] (the layout the fast non-transposed wasm matmul takes; 64 × 64 tiles); the
 * time to upload the [in, out] buffer as a tensor; and the matmul for `tokens` rows, against the
 * resident float32 weight multiplied the way the model does it (x·Wᵀ).
 */
function int8Experiment(shapes: Array<{ label: string; out: number; in: number; count: number }>, tokenCounts: number[]): Record<string, unknown> {
  const rows: Array<Record<string, unknown>> = [];
  for (const { label, out, in: inDim, count } of shapes) {
    const w = benchInput(`bench.int8.${label}`, [out, inDim]);
    const q = new Int8Array(out * inDim);
    const scales = new Float32Array(out);
    for (let o = 0; o < out; o++) {
      let max = 0;
      for (let i = 0; i < inDim; i++) max = Math.max(max, Math.abs(w[o * inDim + i]));
      const s = max / 127 || 1;
      scales[o] = s;
      for (let i = 0; i < inDim; i++) q[o * inDim + i] = Math.round(w[o * inDim + i] / s);
    }
    const wTensor = tf.tensor2d(w, [out, inDim]);
    const deq = new Float32Array(out * inDim);
    const widenContiguous = () => {
      for (let o = 0; o < out; o++) {
        const s = scales[o];
        const base = o * inDim;
        for (let i = 0; i < inDim; i++) deq[base + i] = q[base + i] * s;
      }
    };
    const T = 64;
    const widenTransposed = () => {
      for (let o0 = 0; o0 < out; o0 += T) {
        const o1 = Math.min(out, o0 + T);
        for (let i0 = 0; i0 < inDim; i0 += T) {
          const i1 = Math.min(inDim, i0 + T);
          for (let o = o0; o < o1; o++) {
            const s = scales[o];
            const base = o * inDim;
            for (let i = i0; i < i1; i++) deq[i * out + o] = q[base + i] * s;
          }
        }
      }
    };
    const timeOnce = (f: () => void) => {
      f(); // warm-up (JIT)
      const t0 = performance.now();
      f();
      return performance.now() - t0;
    };
    const widenContiguousMs = timeOnce(widenContiguous);
    const widenMs = timeOnce(widenTransposed);
    tf.tensor2d(deq, [inDim, out]).dispose(); // the first upload of this size also grows the wasm heap
    const tu = performance.now();
    const wt = tf.tensor2d(deq, [inDim, out]);
    const uploadMs = performance.now() - tu;
    for (const tokens of tokenCounts) {
      const x = tf.tensor2d(benchInput(`bench.int8.x.${tokens}`, [tokens, inDim]), [tokens, inDim]);
      const time = (f: () => tf.Tensor) => {
        f().dispose(); // warm-up (the fast path packs its weight here, once)
        const t0 = performance.now();
        const y = f();
        y.dataSync();
        return { ms: performance.now() - t0, y };
      };
      const fast = time(() => tf.matMul(x, wt));
      const model = time(() => tf.matMul(x, wTensor, false, true));
      const err = tf.tidy(() => tf.max(tf.abs(tf.sub(fast.y, model.y))).dataSync()[0] / tf.max(tf.abs(model.y)).dataSync()[0]);
      rows.push({
        label,
        shape: [out, inDim],
        count,
        tokens,
        widenContiguousMs,
        widenMs,
        uploadMs,
        matmulPretransposedMs: fast.ms,
        matmulModelLayoutMs: model.ms,
        int8PathMs: widenMs + uploadMs + fast.ms,
        relMaxError: err,
      });
      tf.dispose([x, fast.y, model.y]);
    }
    tf.dispose([wTensor, wt]);
  }
  return { rows };
}

/**
 * What the fast (non-transposed) wasm matmul keeps: XNNPACK packs the right operand into its own buffer
 * on first use and caches it while the tensor lives. Wasm heap before and after the first product.
 */
function xnnpackPacking(k: number, n: number): Record<string, unknown> {
  const heap0 = wasmHeapMB() ?? NaN;
  const w = tf.randomUniform([k, n], -1, 1, 'float32', 3);
  const x = tf.randomUniform([1, k], -1, 1, 'float32', 4);
  const heap1 = wasmHeapMB() ?? NaN;
  const t0 = performance.now();
  tf.matMul(x, w).dispose();
  const firstMs = performance.now() - t0;
  const heap2 = wasmHeapMB() ?? NaN;
  const t1 = performance.now();
  tf.matMul(x, w).dispose();
  const secondMs = performance.now() - t1;
  const heap3 = wasmHeapMB() ?? NaN;
  // the model's layout: a [n, k] weight multiplied transposed goes through the slow loop, no packing
  const wT = tf.transpose(w);
  const heap4 = wasmHeapMB() ?? NaN;
  tf.matMul(x, wT, false, true).dispose();
  const heap5 = wasmHeapMB() ?? NaN;
  tf.dispose([w, x, wT]);
  return {
    weightMB: (4 * k * n) / MB,
    heapBeforeMB: heap0,
    heapAfterWeightMB: heap1,
    heapAfterFirstFastMatmulMB: heap2,
    heapAfterSecondFastMatmulMB: heap3,
    firstFastMatmulMs: firstMs,
    secondFastMatmulMs: secondMs,
    heapAfterTransposedCopyMB: heap4,
    heapAfterTransposedMatmulMB: heap5,
  };
}

/** Widening 16-bit storage to float32 in JS (the loader's decoders), in M values per second. */
function widen16(values: number): Record<string, unknown> {
  const bytes = new Uint8Array(values * 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131) & 0x3f; // finite, normal-ish halves
  const time = (f: () => unknown) => {
    f();
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  };
  const f16 = time(() => decodeFloat16(bytes));
  const bf16 = time(() => decodeBFloat16(bytes));
  return { values, f16Ms: f16, bf16Ms: bf16, f16MValuesPerS: values / 1e3 / f16, bf16MValuesPerS: values / 1e3 / bf16 };
}

async function experiment(name: string, args: Record<string, unknown>): Promise<unknown> {
  switch (name) {
    case 'heap-ceiling':
      return heapCeiling();
    case 'stream-layer':
      return streamLayer(String(args.dir), String(args.prefix), Number(args.repeats ?? 2));
    case 'int8':
      return int8Experiment(args.shapes as Array<{ label: string; out: number; in: number; count: number }>, args.tokens as number[]);
    case 'widen16':
      return widen16(Number(args.values ?? 16 * MB));
    case 'xnnpack-packing':
      return xnnpackPacking(Number(args.k ?? 4096), Number(args.n ?? 11008));
    default:
      throw new Error(`unknown experiment ${name}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Main loop

async function handle(req: Request, hello: Hello): Promise<unknown> {
  switch (req.cmd) {
    case 'hello':
      return hello;
    case 'load':
      return load(req.dir);
    case 'prepare':
      stages.get(req.key)?.dispose();
      stages.set(req.key, prepare(req.stage));
      return {};
    case 'run':
      return runStage(req.key, req.minMs);
    case 'memory':
      return memoryOf(req.key);
    case 'release':
      stages.get(req.key)?.dispose();
      stages.delete(req.key);
      return {};
    case 'unload':
      // frees the heap for the roofline (next to the slice and XNNPACK's packed weights, stock wasm is near 4 GiB)
      for (const st of stages.values()) st.dispose();
      stages.clear();
      model?.dispose();
      model = null;
      return {};
    case 'gemm':
      return gemm(req);
    case 'experiment':
      return experiment(req.name, req.args);
    case 'stats': {
      const { rssMB, hwmMB } = procMemory();
      const stats: StatsResult = {
        rssMB,
        peakRssMB: hwmMB,
        maxRssMB: Math.max(lifetimePeakMB, hwmMB),
        wasmHeapMB: wasmHeapMB(),
        tensorMB: tf.memory().numBytes / MB,
        nativeCalls: nativeCalls(),
      };
      return stats;
    }
    case 'exit':
      return {};
  }
}

async function main(): Promise<void> {
  // Under tf.profile a kernel error (e.g. the wasm heap running out) also surfaces as a rejected timer
  // promise nobody awaits; Node would turn it into a fatal uncaught exception. Log it instead: the
  // request itself still fails and is answered as an error.
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${String(e).split('\n')[0]}`));
  const argv = process.argv.slice(2);
  const backendArg = argv.includes('--backend') ? argv[argv.indexOf('--backend') + 1] : 'wasm';
  const wantNative = argv.includes('--native');
  // setBackend turns the native matmul on by default where nblas loads (src/native); the stock column
  // must not get it, the native column asks for it explicitly below.
  process.env.VIDEO_LLAVA_NATIVE = wantNative ? '1' : '0';
  const backend = await setBackend(backendArg);
  const native = wantNative ? await enableNative() : undefined;
  if (argv.includes('--experiment')) {
    const name = argv[argv.indexOf('--experiment') + 1];
    process.stdout.write(REPLY_PREFIX + JSON.stringify({ id: 0, ok: true, result: await experiment(name, {}) }) + '\n');
    return;
  }
  const hello: Hello = {
    impl: `tfjs-${backend}${native?.enabled ? '+native' : ''}`,
    versions: { tfjs: tf.version.tfjs, node: process.versions.node },
    backend,
    threads: backend === 'tensorflow' ? os.cpus().length : 1, // TensorFlow's own thread pools use every core
    native,
  };
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      log(`ignored a line that is not JSON: ${line.slice(0, 80)}`);
      continue;
    }
    try {
      const result = await handle(req, hello);
      process.stdout.write(REPLY_PREFIX + JSON.stringify({ id: req.id, ok: true, result }) + '\n');
    } catch (e) {
      const error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      process.stdout.write(REPLY_PREFIX + JSON.stringify({ id: req.id, ok: false, error }) + '\n');
    }
    if (req.cmd === 'exit') break;
  }
  for (const s of stages.values()) s.dispose();
  model?.dispose();
}

main().catch((e) => {
  process.stderr.write(`[tfjs] fatal: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
