/**
 * Matrix-multiply benchmark for the optional native path (src/native):
 *
 *   1. crossover: time of one tf.matMul of n×n×n on stock wasm and on the native kernel, small n, to
 *      pick DEFAULT_MIN_MACS;
 *   2. GFLOPS (2·m·n·k / time) of OpenBLAS sgemm called directly through nblas, the native kernel under
 *      tf.matMul (wasm backend), stock wasm and stock cpu, on 256…2048 squares and the model's shapes;
 *   3. one CLIP-L-width encoder layer (hidden 1024, MLP 4096, 16 heads) over 8×257 tokens, synthetic
 *      weights, on stock wasm and native.
 *
 * Not a test. From the repository root:
 *
 *   npx tsc -p tsconfig.json --outDir tmp/bench && node tmp/bench/benchmarks/matmul.js [--quick] [--json FILE]
 *
 * VIDEO_LLAVA_BLAS_THREADS=1 for single-threaded OpenBLAS. --quick skips stock cpu on the large shapes
 * (minutes each) and 2048². Each figure is the median of several runs after one warm-up (one run where a
 * single run takes over 2 s).
 */
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../src/backend';
import { ClipEncoderLayer } from '../src/models/clip/modeling';
import { parseClipVisionConfig } from '../src/models/clip/config';
import { DEFAULT_MIN_MACS, disableNativeMatmul, enableNativeMatmul, nativeMatmulStatus } from '../src/native';
import { NO_TRANS, Sgemm, TRANS, loadBlas } from '../src/native/blas';
import { syntheticWeight } from '../src/weights/synthetic';

interface Shape {
  name: string;
  m: number;
  k: number;
  n: number;
  transB: boolean; // B stored [n, k] as a Linear weight [out, in]
}

const SQUARES: Shape[] = [256, 512, 1024, 2048].map((s) => ({ name: `${s}²`, m: s, k: s, n: s, transB: false }));
const MODEL: Shape[] = [
  { name: 'CLIP-L fc1 [2056,1024]·[4096,1024]ᵀ', m: 2056, k: 1024, n: 4096, transB: true },
  { name: 'Llama up [270,4096]·[11008,4096]ᵀ', m: 270, k: 4096, n: 11008, transB: true },
  { name: 'decode [1,4096]·[4096,4096]ᵀ', m: 1, k: 4096, n: 4096, transB: true },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median milliseconds of `run`, after one warm-up; fewer runs when one is slow. */
function time(run: () => void, budgetMs = 1500, maxRuns = 15): number {
  let t0 = performance.now();
  run();
  const first = performance.now() - t0;
  if (first > 2000) return first;
  const runs = Math.max(3, Math.min(maxRuns, Math.floor(budgetMs / Math.max(first, 1e-3))));
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    t0 = performance.now();
    run();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

function gflops(s: Shape, ms: number): number {
  return (2 * s.m * s.n * s.k) / (ms * 1e6);
}

function randn(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let h = seed >>> 0;
  for (let i = 0; i < size; i++) {
    h = (Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    out[i] = (h / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** sgemm on plain Float32Arrays: the library's own speed, without tfjs. */
function direct(sgemm: Sgemm, s: Shape): number {
  const a = randn(s.m * s.k, 1);
  const b = randn(s.k * s.n, 2);
  const c = new Float32Array(s.m * s.n);
  const ldb = s.transB ? s.k : s.n;
  return time(() => sgemm(NO_TRANS, s.transB ? TRANS : NO_TRANS, s.m, s.n, s.k, 1, a, s.k, b, ldb, 0, c, s.n));
}

/** tf.matMul on the current backend and kernel registration; also returns the result for comparison. */
function viaTf(s: Shape): { ms: number; out: Float32Array } {
  const a = tf.tensor2d(randn(s.m * s.k, 1), [s.m, s.k]);
  const b = tf.tensor2d(randn(s.k * s.n, 2), s.transB ? [s.n, s.k] : [s.k, s.n]);
  const ms = time(() => tf.matMul(a, b, false, s.transB).dispose());
  const y = tf.matMul(a, b, false, s.transB);
  const out = y.dataSync() as Float32Array;
  tf.dispose([a, b, y]);
  return { ms, out };
}

function maxRelDiff(x: Float32Array, ref: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(x[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / (m || 1);
}

/** µs per tf.matMul on wasm, stock and native (minMacs 0), for one pair of operand shapes. */
function stockVsNative(aShape: number[], bShape: number[], transB: boolean): [number, number] {
  const a = tf.tensor(randn(aShape.reduce((x, y) => x * y), 3), aShape);
  const b = tf.tensor(randn(bShape.reduce((x, y) => x * y), 4), bShape);
  const run = () => tf.matMul(a, b, false, transB).dispose();
  disableNativeMatmul();
  const stock = time(run, 300, 2000) * 1e3;
  enableNativeMatmul({ minMacs: 0 });
  const native = time(run, 300, 2000) * 1e3;
  tf.dispose([a, b]);
  return [stock, native];
}

async function crossover(): Promise<void> {
  await setBackend('wasm', { native: false });
  console.log('\n1. crossover: µs per tf.matMul on wasm, stock vs native kernel (minMacs 0); macs = m·n·k per sgemm call');
  const cases: Array<[string, number[], number[], boolean]> = [];
  for (const n of [4, 8, 16, 32, 64, 128]) cases.push([`${n}×${n}·${n}×${n}`, [n, n], [n, n], false]);
  for (const n of [4, 8, 16, 32]) cases.push([`[128,${n},${n}]·[128,${n},${n}]`, [128, n, n], [128, n, n], false]);
  for (const t of [8, 16, 64, 256]) cases.push([`decode q·kᵀ [32,1,64]·[32,${t},64]ᵀ`, [32, 1, 64], [32, t, 64], true]);
  for (const t of [8, 16, 64, 256]) cases.push([`decode p·v [32,1,${t}]·[32,${t},64]`, [32, 1, t], [32, t, 64], false]);
  console.log(`   ${'shape'.padEnd(34)}${'macs'.padStart(8)}${'stock µs'.padStart(11)}${'native µs'.padStart(11)}`);
  for (const [name, aShape, bShape, transB] of cases) {
    const [stock, native] = stockVsNative(aShape, bShape, transB);
    const m = aShape[aShape.length - 2];
    const k = aShape[aShape.length - 1];
    const n = transB ? bShape[bShape.length - 2] : bShape[bShape.length - 1];
    console.log(`   ${name.padEnd(34)}${String(m * n * k).padStart(8)}${stock.toFixed(1).padStart(11)}${native.toFixed(1).padStart(11)}`);
  }
  enableNativeMatmul({ minMacs: DEFAULT_MIN_MACS });
  console.log(`   chosen DEFAULT_MIN_MACS = ${DEFAULT_MIN_MACS}`);
}

async function gemmTable(quick: boolean): Promise<Record<string, number | null>[]> {
  const blas = loadBlas();
  if (!blas.ok) throw new Error(blas.reason);
  const rows: Record<string, number | null>[] = [];
  console.log('\n2. GFLOPS (median)        OpenBLAS  native/wasm  stock wasm  stock cpu   native≈stock (max rel diff)');
  for (const s of [...SQUARES, ...MODEL]) {
    if (quick && s.m === 2048) continue;
    const openblas = gflops(s, direct(blas.blas.sgemm, s));
    await setBackend('wasm', { native: true });
    const native = viaTf(s);
    await setBackend('wasm', { native: false });
    const stockWasm = viaTf(s);
    const heavy = 2 * s.m * s.n * s.k > 4e9;
    let stockCpu: number | null = null;
    if (!(quick && heavy)) {
      await setBackend('cpu', { native: false });
      stockCpu = gflops(s, viaTf(s).ms);
    }
    const row = {
      openblas,
      native: gflops(s, native.ms),
      stockWasm: gflops(s, stockWasm.ms),
      stockCpu,
      relDiff: maxRelDiff(native.out, stockWasm.out),
    };
    rows.push(row);
    const f = (v: number | null) => (v === null ? 'skipped' : v.toFixed(1)).padStart(10);
    console.log(`${s.name.padEnd(36)}${f(row.openblas)} ${f(row.native)}  ${f(row.stockWasm)} ${f(row.stockCpu)}   ${row.relDiff.toExponential(1)}`);
  }
  return rows;
}

/** CLIP-L widths; synthetic weights keyed like the checkpoint. */
function clipLayer(): ClipEncoderLayer {
  const config = parseClipVisionConfig({ hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, image_size: 224, patch_size: 14 });
  const layer = new ClipEncoderLayer(config);
  for (const [path, p] of layer.namedParameters('vision_tower.vision_model.encoder.layers.0.')) {
    p.set(tf.tensor(syntheticWeight(path, [...p.shape]), [...p.shape], 'float32'), path);
  }
  return layer;
}

async function encoderLayer(): Promise<{ stock: number; native: number; relDiff: number }> {
  await setBackend('wasm', { native: false });
  const layer = clipLayer();
  const x = tf.tensor3d(randn(8 * 257 * 1024, 5), [8, 257, 1024]);
  const run = (keep: boolean) => {
    const y = layer.call(x);
    const out = keep ? (y.dataSync() as Float32Array) : null;
    y.dispose();
    return out;
  };
  const stock = time(() => run(false), 8000, 3);
  const ref = run(true) as Float32Array;
  await setBackend('wasm', { native: true });
  const native = time(() => run(false), 8000, 5);
  const relDiff = maxRelDiff(run(true) as Float32Array, ref);
  layer.dispose();
  x.dispose();
  console.log('\n3. CLIP-L encoder layer, 8×257 tokens, wasm backend (median ms)');
  console.log(`   stock ${stock.toFixed(0)} ms   native ${native.toFixed(0)} ms   ×${(stock / native).toFixed(1)}   max rel diff ${relDiff.toExponential(1)}`);
  return { stock, native, relDiff };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const jsonAt = argv.indexOf('--json');
  await setBackend('wasm', { native: true });
  const status = nativeMatmulStatus();
  console.log(status.reason);
  if (!status.enabled) return;
  await crossover();
  const gemm = await gemmTable(quick);
  const layer = await encoderLayer();
  if (jsonAt >= 0) {
    const file = argv[jsonAt + 1];
    fs.writeFileSync(file, JSON.stringify({ library: status.library, threads: status.threads, gemm, layer }, null, 1) + '\n');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
