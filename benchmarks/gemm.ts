/**
 * Which GEMM under the kernels: the products of the 7B (prefill-shaped, 512 rows, and decode-shaped, 1 row) on every
 * candidate this machine has, in one run: the addon's kernel families (portable, AVX-512, AMX; float32, bfloat16 and
 * float16 weights; float32 and bfloat16 compute), OpenBLAS through nblas (OPENBLAS_CORETYPE as the environment sets
 * it) and oneDNN's sgemm (libdnnl, found at run time). Each thread count runs in its own process (OpenBLAS and
 * oneDNN fix theirs at load).
 *
 *   npm run bench:gemm [-- --threads 1,2] [--rows 512,1] [--repeats 3]
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { ISAS, NativeAddon, nativeAddon } from '../src/native/addon';
import { NO_TRANS, TRANS, loadBlas } from '../src/native/blas';

/** [N, K] of the 7B's weights: q/k/v/o, gate/up, down, lm_head; CLIP-L fc1, fc2. */
const SHAPES: Array<[string, number, number]> = [
  ['llama q_proj', 4096, 4096],
  ['llama gate_proj', 11008, 4096],
  ['llama down_proj', 4096, 11008],
  ['lm_head', 32064, 4096],
  ['clip fc1', 4096, 1024],
  ['clip fc2', 1024, 4096],
];

interface Row {
  threads: number;
  rows: number;
  shape: string;
  path: string;
  ms: number;
  gflops: number;
  weightGBps: number;
}

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return out;
}

function bf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return out;
}

function best(repeats: number, fn: () => void): number {
  fn(); // warm-up (page faults, packing buffers, JIT in oneDNN)
  let ms = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    ms = Math.min(ms, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ms;
}

function measure(threads: number, rowsList: number[], repeats: number): Row[] {
  const addon = nativeAddon() as NativeAddon;
  addon.setThreads(threads);
  const blas = loadBlas('nblas', threads);
  const bestIsa = addon.features().bestIsa;
  const isas = ISAS.slice(0, ISAS.indexOf(bestIsa) + 1);
  const out: Row[] = [];
  for (const rows of rowsList) {
    for (const [shape, N, K] of SHAPES) {
      const x = values(rows * K, 1);
      const wf = values(N * K, 2);
      const wh = bf16(wf);
      const c = new Float32Array(rows * N);
      const record = (name: string, bytesPerWeight: number, fn: () => void) => {
        const ms = best(repeats, fn);
        out.push({ threads, rows, shape, path: name, ms, gflops: (2 * rows * N * K) / ms / 1e6, weightGBps: (N * K * bytesPerWeight) / ms / 1e6 });
      };
      for (const isa of isas) {
        if (isa === 'portable' && rows > 64) continue; // minutes at prefill sizes: the fallback, not a candidate
        addon.setIsa(isa);
        record(`addon ${isa} f32 weights`, 4, () => addon.gemm(rows, N, K, x, K, false, 0, wf, K, true, c, N, 0, 0));
        record(`addon ${isa} bf16 weights`, 2, () => addon.gemm(rows, N, K, x, K, false, 1, wh, K, true, c, N, 0, 0));
        if (rows > 4) record(`addon ${isa} bf16 weights, bf16 compute`, 2, () => addon.gemm(rows, N, K, x, K, false, 1, wh, K, true, c, N, 0, 1));
      }
      addon.setIsa(bestIsa);
      if (blas.ok) record(`OpenBLAS sgemm (${blas.blas.library.split(' on ').pop()})`, 4, () => blas.blas.sgemm(NO_TRANS, TRANS, rows, N, K, 1, x, K, wf, K, 0, c, N));
      if (addon.dnnlSgemm(1, 1, 1, x, 1, false, wf, 1, false, c, 1, 0)) record('oneDNN sgemm', 4, () => addon.dnnlSgemm(rows, N, K, x, K, false, wf, K, true, c, N, 0));
    }
  }
  return out;
}

function main(): void {
  const argv = process.argv.slice(2);
  const opt = (name: string, fallback: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const rows = opt('--rows', '512,1').split(',').map(Number);
  const repeats = Number(opt('--repeats', '3'));
  const child = opt('--child', '');
  if (child) {
    process.stdout.write(JSON.stringify(measure(Number(child), rows, repeats)) + '\n');
    return;
  }
  if (!nativeAddon()) throw new Error('the addon is not built: npm install');
  const all: Row[] = [];
  for (const t of opt('--threads', '1,2').split(',').map(Number)) {
    const env = { ...process.env, OPENBLAS_NUM_THREADS: String(t), OMP_NUM_THREADS: String(t), VIDEO_LLAVA_THREADS: String(t) };
    const r = spawnSync(process.execPath, [path.join(__dirname, 'gemm.js'), '--child', String(t), '--rows', rows.join(','), '--repeats', String(repeats)], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(r.stderr);
    all.push(...(JSON.parse(r.stdout.trim().split('\n').pop()!) as Row[]));
  }
  const lines = ['| threads | rows | product [N, K] | path | ms | GFLOPS | weight GB/s |', '|---|---|---|---|---|---|---|'];
  for (const r of all) {
    const [, N, K] = SHAPES.find(([s]) => s === r.shape)!;
    lines.push(`| ${r.threads} | ${r.rows} | ${r.shape} [${N}, ${K}] | ${r.path} | ${r.ms.toFixed(2)} | ${r.gflops.toFixed(1)} | ${r.weightGBps.toFixed(1)} |`);
  }
  console.log(`GEMM candidates, ${new Date().toISOString()}, OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}\n`);
  console.log(lines.join('\n'));
}

main();
