/**
 * `npm run bench`: TypeScript (tfjs) against PyTorch on this machine, in this run, on the same
 * checkpoints and the same inputs. See benchmarks/README.md for what is measured and how to read it.
 *
 *   node .bench-build/benchmarks/run.js [--configs tiny,small,slice7b] [--repeats 3] [--warmup 1]
 *        [--min-ms 50] [--prefill small=64,slice7b=32] [--frames small=1] [--decode-lengths 16,256,1024,2074]
 *        [--native-threads 1,2|none] [--no-torch] [--no-roofline] [--no-experiments] [--real-prefill-cpu]
 *        [--keep-checkpoints] [--out benchmarks/results]
 *
 * Each implementation runs in its own process (a tfjs worker, a PyTorch worker), loaded once; the
 * repeats alternate between the columns (tfjs, torch 1 thread eager, …) so that a slow spell on a busy
 * machine hits every column alike. Results: benchmarks/results/latest.{json,md} and a table on stdout.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeSyntheticCheckpoint } from './checkpoint';
import {
  BenchConfig,
  CONFIG_NAMES,
  ConfigName,
  Gemm,
  decoderGemms,
  full7bConfig,
  gemmKey,
  loadBenchConfigs,
  paramCounts,
  projectorGemms,
  repoRoot,
  stageFlops,
  uniqueShapes,
  visionGemms,
} from './configs';
import { textIds } from './inputs';
import { GemmResult, Hello, LoadResult, MemoryResult, REPLY_PREFIX, RunResult, StageSpec, StatsResult } from './protocol';
import { renderConsole, renderMarkdown } from './report';
import { ConfigResult, Extrapolation, Results, RooflineRow, StageResult, Variant, VariantStage } from './results';
import { invert, summarize } from './stats';
import { Worker } from './workers';

const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Options

interface Options {
  configs: ConfigName[];
  repeats: number;
  warmup: number;
  minMs: number;
  prefill: Partial<Record<ConfigName, number>>;
  frames: Partial<Record<ConfigName, number>>;
  decodeLengths: number[] | null;
  torch: boolean;
  nativeThreads: number[];
  roofline: boolean;
  experiments: boolean;
  realPrefillCpu: boolean;
  keepCheckpoints: boolean;
  out: string;
  python: string | null;
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\nsee benchmarks/README.md for the options\n`);
  process.exit(2);
}

function perConfig(value: string, flag: string): Partial<Record<ConfigName, number>> {
  const out: Partial<Record<ConfigName, number>> = {};
  for (const part of value.split(',')) {
    const [name, n] = part.split('=');
    if (!(CONFIG_NAMES as readonly string[]).includes(name) || !/^\d+$/.test(n ?? '') || Number(n) < 1) {
      usage(`${flag}: expected name=positive integer for names in ${CONFIG_NAMES.join(', ')}, found "${part}"`);
    }
    out[name as ConfigName] = Number(n);
  }
  return out;
}

function positive(value: string | undefined, flag: string, allowZero = false): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) usage(`${flag}: expected a ${allowZero ? 'non-negative' : 'positive'} integer, found "${value}"`);
  return n;
}

function findPython(): string | null {
  const candidates = [process.env.VIDEO_LLAVA_REF_PYTHON, '/work/.venv-ref/bin/python', path.join(repoRoot(), '.venv-ref', 'bin', 'python')];
  return candidates.find((p): p is string => !!p && fs.existsSync(p)) ?? null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    configs: [...CONFIG_NAMES],
    repeats: 3,
    warmup: 1,
    minMs: 50,
    prefill: {},
    frames: {},
    decodeLengths: null,
    torch: true,
    nativeThreads: [1, 2],
    roofline: true,
    experiments: true,
    realPrefillCpu: false,
    keepCheckpoints: false,
    out: path.join(repoRoot(), 'benchmarks', 'results'),
    python: findPython(),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i] ?? usage(`${a} needs a value`);
    switch (a) {
      case '--configs': {
        const names = next().split(',');
        for (const n of names) if (!(CONFIG_NAMES as readonly string[]).includes(n)) usage(`--configs: unknown config "${n}"; known: ${CONFIG_NAMES.join(', ')}`);
        o.configs = names as ConfigName[];
        break;
      }
      case '--repeats':
        o.repeats = positive(next(), a);
        break;
      case '--warmup':
        o.warmup = positive(next(), a, true);
        break;
      case '--min-ms':
        o.minMs = positive(next(), a, true);
        break;
      case '--prefill':
        o.prefill = perConfig(next(), a);
        break;
      case '--frames':
        o.frames = perConfig(next(), a);
        break;
      case '--decode-lengths':
        o.decodeLengths = next().split(',').map((s) => positive(s, a));
        break;
      case '--no-torch':
        o.torch = false;
        break;
      case '--native-threads':
        o.nativeThreads = next() === 'none' ? [] : argv[i].split(',').map((x) => positive(x, a));
        break;
      case '--no-roofline':
        o.roofline = false;
        break;
      case '--no-experiments':
        o.experiments = false;
        break;
      case '--real-prefill-cpu':
        o.realPrefillCpu = true;
        break;
      case '--keep-checkpoints':
        o.keepCheckpoints = true;
        break;
      case '--out':
        o.out = path.resolve(next());
        break;
      case '--python':
        o.python = next();
        break;
      case '--help':
      case '-h':
        usage('options');
        break;
      default:
        usage(`unknown option "${a}"`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Workers

const TS_WORKER = path.join(__dirname, 'tfjs_bench.js');
const TORCH_WORKER = path.join(repoRoot(), 'benchmarks', 'torch_bench.py');

function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

interface Pool {
  workers: Map<string, Worker>;
  variants: Variant[];
  hellos: Record<string, Hello>;
}

function tfjsNodeAvailable(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

async function startWorkers(opts: Options, log: fs.WriteStream): Promise<Pool> {
  const workers = new Map<string, Worker>();
  const hellos: Record<string, Hello> = {};
  const variants: Variant[] = [];
  const ts = new Worker('tfjs-wasm', process.execPath, ['--expose-gc', TS_WORKER, '--backend', 'wasm'], log);
  workers.set('tfjs-wasm', ts);
  hellos['tfjs-wasm'] = await ts.request<Hello>({ cmd: 'hello' });
  variants.push({ name: 'tfjs-wasm', worker: 'tfjs-wasm' });

  // Column hook for the native-BLAS matmul: tfjs workers started with --native call
  // enableNativeMatmul() from src/native when that export exists (one worker per OpenBLAS thread
  // count); otherwise the columns are left out and the reason is recorded in meta.nativeColumn.
  for (const threads of opts.nativeThreads) {
    const name = `tfjs-wasm+native-${threads}t`;
    const env = { ...process.env, VIDEO_LLAVA_BLAS_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
    const native = new Worker(name, process.execPath, ['--expose-gc', TS_WORKER, '--backend', 'wasm', '--native'], log, env);
    const hello = await native.request<Hello>({ cmd: 'hello' });
    hellos[name] = hello;
    if (hello.native?.enabled) {
      workers.set(name, native);
      variants.push({ name, worker: name });
    } else {
      await native.close();
      break; // the same reason holds for every thread count
    }
  }

  // The native TensorFlow backend, when @tensorflow/tfjs-node resolves (not a dependency: see
  // scripts/tfjs-node-offline.sh and NODE_PATH). TensorFlow uses every core.
  if (tfjsNodeAvailable()) {
    const name = 'tfjs-tensorflow';
    const w = new Worker(name, process.execPath, ['--expose-gc', TS_WORKER, '--backend', 'tensorflow'], log, { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' });
    try {
      hellos[name] = await w.request<Hello>({ cmd: 'hello' });
      workers.set(name, w);
      variants.push({ name, worker: name });
    } catch (e) {
      progress(`tfjs-tensorflow column left out: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      await w.close();
    }
  }

  if (opts.torch && opts.python) {
    const torch = new Worker('torch', opts.python, ['-u', TORCH_WORKER], log, { ...process.env, TOKENIZERS_PARALLELISM: 'false' });
    workers.set('torch', torch);
    hellos.torch = await torch.request<Hello>({ cmd: 'hello' });
    for (const threads of [1, 2]) {
      for (const attn of ['eager', 'sdpa'] as const) variants.push({ name: `torch-${threads}t-${attn}`, worker: 'torch', threads, attn });
    }
  }
  return { workers, variants, hellos };
}

async function closeAll(pool: Pool): Promise<void> {
  await Promise.all([...pool.workers.values()].map((w) => w.close()));
}

// ---------------------------------------------------------------------------------------------------
// One configuration

function workloadOf(cfg: BenchConfig, opts: Options) {
  const w = cfg.workload;
  return {
    visionFrames: opts.frames[cfg.name] ?? w.visionFrames,
    projectorFrames: opts.frames[cfg.name] ?? w.projectorFrames,
    prefillLength: opts.prefill[cfg.name] ?? w.prefillLength,
    decodeLengths: opts.decodeLengths ?? w.decodeLengths,
  };
}

interface StagePlan {
  key: string;
  spec: StageSpec;
  result: Omit<StageResult, 'variants'>;
  gemms: Gemm[];
}

function planStages(cfg: BenchConfig, opts: Options): StagePlan[] {
  const w = workloadOf(cfg, opts);
  const c = cfg.config;
  const plans: StagePlan[] = [];
  const vg = visionGemms(c, w.visionFrames);
  plans.push({ key: 'vision', spec: { kind: 'vision', frames: w.visionFrames }, gemms: vg, result: { key: 'vision', kind: 'vision', unit: 'ms/frame', frames: w.visionFrames, flops: stageFlops(vg) } });
  const pg = projectorGemms(c, w.projectorFrames);
  plans.push({ key: 'projector', spec: { kind: 'projector', frames: w.projectorFrames }, gemms: pg, result: { key: 'projector', kind: 'projector', unit: 'ms/frame', frames: w.projectorFrames, flops: stageFlops(pg) } });
  const L = w.prefillLength;
  const fg = decoderGemms(c, L, 0);
  plans.push({ key: 'prefill', spec: { kind: 'prefill', ids: textIds(c, L) }, gemms: fg, result: { key: 'prefill', kind: 'prefill', unit: 'tokens/s', tokens: L, flops: stageFlops(fg) } });
  for (const T of w.decodeLengths) {
    const dg = decoderGemms(c, 1, T);
    plans.push({
      key: `decode@${T}`,
      spec: { kind: 'decode', past: T, ids: textIds(c, 1, T) },
      gemms: dg,
      result: { key: `decode@${T}`, kind: 'decode', unit: 'tokens/s', tokens: 1, past: T, flops: stageFlops(dg) },
    });
  }
  return plans;
}

function runArgs(v: Variant, key: string, minMs: number): Record<string, unknown> & { cmd: string } {
  return { cmd: 'run', key, minMs, ...(v.threads ? { threads: v.threads } : {}), ...(v.attn ? { attn: v.attn } : {}) };
}

async function measureStage(pool: Pool, plan: StagePlan, opts: Options): Promise<StageResult> {
  const workerNames = [...new Set(pool.variants.map((v) => v.worker))];
  for (const w of workerNames) await pool.workers.get(w)!.request({ cmd: 'prepare', key: plan.key, stage: plan.spec });
  const runs: Record<string, RunResult[]> = Object.fromEntries(pool.variants.map((v) => [v.name, []]));
  for (let r = 0; r < opts.warmup; r++) {
    for (const v of pool.variants) await pool.workers.get(v.worker)!.request<RunResult>(runArgs(v, plan.key, 0));
  }
  // Repeats alternate between the columns (side by side), so drifts in machine load hit all of them.
  for (let r = 0; r < opts.repeats; r++) {
    for (const v of pool.variants) runs[v.name].push(await pool.workers.get(v.worker)!.request<RunResult>(runArgs(v, plan.key, opts.minMs)));
  }
  const memory: Record<string, MemoryResult> = {};
  for (const w of workerNames) memory[w] = await pool.workers.get(w)!.request<MemoryResult>({ cmd: 'memory', key: plan.key });
  for (const w of workerNames) await pool.workers.get(w)!.request({ cmd: 'release', key: plan.key });

  const per = (plan.result.frames ?? plan.result.tokens ?? 1) as number;
  const variants: Record<string, VariantStage> = {};
  const base = runs['tfjs-wasm'];
  const baseMedian = summarize(base.map((x) => x.ms)).median;
  for (const v of pool.variants) {
    const rs = runs[v.name];
    const ms = summarize(rs.map((x) => x.ms));
    const value = plan.result.unit === 'ms/frame' ? summarize(rs.map((x) => x.ms / per)) : invert(summarize(rs.map((x) => x.ms)), 1000 * per);
    const probe = rs[rs.length - 1].probe;
    const ref = base[base.length - 1].probe;
    const vs: VariantStage = { msPerCall: ms, value, gflops: plan.result.flops / ms.median / 1e6, iters: rs[0].iters, probe, memory: memory[v.worker] };
    if (v.name !== 'tfjs-wasm') {
      vs.tfjsTimeRatio = baseMedian / ms.median;
      vs.agreement = {
        relAbsSum: Math.abs(probe.absSum - ref.absSum) / Math.max(ref.absSum, 1e-30),
        maxHeadDiff: Math.max(...probe.head.map((h, i) => Math.abs(h - ref.head[i]))),
      };
    }
    variants[v.name] = vs;
  }
  return { ...plan.result, variants };
}

/** The GEMM columns of the roofline: tfjs as the model runs it (stock wasm, native kernels), torch. */
function gemmColumns(pool: Pool): Array<{ name: string; worker: string; threads?: number }> {
  const cols: Array<{ name: string; worker: string; threads?: number }> = [{ name: 'tfjs-model', worker: 'tfjs-wasm' }];
  for (const w of pool.workers.keys()) if (w.includes('+native')) cols.push({ name: w.replace('tfjs-wasm+', ''), worker: w });
  if (pool.workers.has('tfjs-tensorflow')) cols.push({ name: 'tensorflow', worker: 'tfjs-tensorflow' });
  if (pool.workers.has('torch')) cols.push({ name: 'torch-1t', worker: 'torch', threads: 1 }, { name: 'torch-2t', worker: 'torch', threads: 2 });
  return cols;
}

async function roofline(pool: Pool, plans: StagePlan[]): Promise<RooflineRow[]> {
  const reference: Gemm = { label: 'reference 1024²', batch: 1, m: 1024, k: 1024, n: 1024, transB: true, count: 1 };
  const shapes = uniqueShapes([reference, ...plans.flatMap((p) => p.gemms.map((g) => ({ ...g, count: 1 })))]);
  const rows: RooflineRow[] = [];
  for (const g of shapes) {
    const row: RooflineRow = { label: g.label, shape: gemmKey(g), batch: g.batch, m: g.m, k: g.k, n: g.n, transB: g.transB, flops: 2 * g.batch * g.m * g.k * g.n, gflops: {}, raw: {} };
    for (const col of gemmColumns(pool)) {
      try {
        const r = await pool.workers.get(col.worker)!.request<GemmResult>({ cmd: 'gemm', batch: g.batch, m: g.m, k: g.k, n: g.n, transB: g.transB, layout: 'model', threads: col.threads, repeats: 2 });
        row.gflops[col.name] = r.gflops;
        row.raw[col.name] = r;
      } catch (e) {
        row.gflops[col.name] = null;
        row.raw[col.name] = { error: String(e instanceof Error ? e.message : e) };
      }
    }
    rows.push(row);
    progress(`  gemm ${row.shape}: ${Object.entries(row.gflops).map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(1)}`).join(', ')} GFLOPS`);
  }
  return rows;
}

/** Σ count × time of each GEMM at the measured rate of its shape, per roofline column. */
function gemmBounds(stages: StageResult[], plans: StagePlan[], rows: RooflineRow[]): void {
  const byKey = new Map(rows.map((r) => [r.shape, r]));
  for (const s of stages) {
    const plan = plans.find((p) => p.key === s.key)!;
    const ms: Record<string, number> = {};
    const cols = Object.keys(rows[0]?.gflops ?? {});
    for (const col of cols) {
      let total = 0;
      for (const g of plan.gemms) {
        const rate = byKey.get(gemmKey(g))?.gflops[col];
        if (rate === null || rate === undefined) {
          total = NaN;
          break;
        }
        total += (2 * g.batch * g.m * g.k * g.n * g.count) / rate / 1e6;
      }
      ms[col] = total;
    }
    s.gemmBound = { ms };
  }
}

async function benchConfig(cfg: BenchConfig, opts: Options, log: fs.WriteStream, tmpRoot: string, experiments: Record<string, unknown>): Promise<ConfigResult> {
  const params = paramCounts(cfg.config);
  const result: ConfigResult = {
    name: cfg.name,
    description: cfg.description,
    params,
    weightBytes: 4 * params.total,
    checkpoint: { dir: cfg.fixtureDir ?? '', bytes: 0, written: false },
    hellos: {},
    load: {},
    stages: [],
    roofline: [],
    workerStats: {},
    errors: [],
  };
  let dir = cfg.fixtureDir;
  if (!dir) {
    dir = path.join(tmpRoot, cfg.name);
    progress(`${cfg.name}: writing a synthetic float32 checkpoint (${(result.weightBytes / MB).toFixed(0)} MiB) to ${dir}`);
    const w = writeSyntheticCheckpoint(dir, cfg.configText, cfg.config);
    result.checkpoint = { dir, bytes: w.bytes, written: true, writeMs: w.ms };
  } else {
    result.checkpoint.bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
  }

  const pool = await startWorkers(opts, log);
  result.hellos = pool.hellos;
  try {
    // Each worker loads in turn (never two at once), each as the first thing it does.
    for (const [name, w] of pool.workers) {
      progress(`${cfg.name}: ${name} loads the checkpoint`);
      const l = await w.request<LoadResult>({ cmd: 'load', dir });
      result.load[name] = { ...l, mbPerS: l.bytes / MB / (l.ms / 1000), peakOverWeights: (l.rssPeakMB - l.rssBeforeMB) / (result.weightBytes / MB) };
    }
    const plans = planStages(cfg, opts);
    for (const plan of plans) {
      progress(`${cfg.name}: ${plan.key} (${(plan.result.flops / 1e9).toFixed(2)} GFLOP per call)`);
      try {
        result.stages.push(await measureStage(pool, plan, opts));
      } catch (e) {
        result.errors.push(`${plan.key}: ${e instanceof Error ? e.message : String(e)}`);
        progress(`${cfg.name}: ${plan.key} failed: ${e instanceof Error ? e.message : String(e)}`);
        if ([...pool.workers.values()].some((w) => !w.alive)) throw e;
      }
    }
    if (opts.roofline) {
      progress(`${cfg.name}: GEMM roofline`);
      for (const [name, w] of pool.workers) if (name.startsWith('tfjs')) await w.request({ cmd: 'unload' });
      result.roofline = await roofline(pool, plans);
      gemmBounds(result.stages, plans, result.roofline);
    }
    for (const [name, w] of pool.workers) result.workerStats[name] = await w.request<StatsResult>({ cmd: 'stats' });
    if (opts.experiments && cfg.name === 'slice7b') await sliceExperiments(pool, cfg, dir, experiments, log);
  } catch (e) {
    result.errors.push(e instanceof Error ? e.message : String(e));
    progress(`${cfg.name}: aborted: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await closeAll(pool);
  }
  try {
    if (opts.experiments && cfg.name === 'slice7b') experiments.prefillRealLengthTfjs = await tfjsPrefillAtRealLength(cfg, dir, opts, log);
  } finally {
    if (result.checkpoint.written && !opts.keepCheckpoints) fs.rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------
// Experiments behind the 7B-on-24-GB proposal (measurements only)

async function sliceExperiments(pool: Pool, cfg: BenchConfig, dir: string, out: Record<string, unknown>, log: fs.WriteStream): Promise<void> {
  const ts = pool.workers.get('tfjs-wasm')!;
  const t = cfg.config.text_config;
  const safe = async (name: string, f: () => Promise<unknown>) => {
    progress(`experiment ${name}`);
    try {
      out[name] = await f();
    } catch (e) {
      out[name] = { error: e instanceof Error ? e.message : String(e) };
    }
  };
  await safe('streamDecoderLayer', () => ts.request({ cmd: 'experiment', name: 'stream-layer', args: { dir, prefix: 'language_model.model.layers.0.', repeats: 2 } }));
  const torch = pool.workers.get('torch');
  if (torch) await safe('diskReadODirect', () => torch.request({ cmd: 'experiment', name: 'odirect-read', args: { file: path.join(dir, 'model.safetensors'), bytes: 1 << 30 } }));
  const D = t.hidden_size;
  const shapes = [
    { label: 'q/k/v/o_proj', out: t.num_attention_heads * t.head_dim, in: D, count: 4 },
    { label: 'gate/up_proj', out: t.intermediate_size, in: D, count: 2 },
    { label: 'down_proj', out: D, in: t.intermediate_size, count: 1 },
    { label: 'lm_head', out: t.vocab_size, in: D, count: 1 },
  ];
  // In a fresh worker: the lm_head case alone adds ~1.6 GB to the wasm heap, too close to 4 GiB next to the slice.
  const fresh = new Worker('tfjs-wasm-experiments', process.execPath, ['--expose-gc', TS_WORKER, '--backend', 'wasm'], log);
  try {
    await safe('int8DequantMatmul', () => fresh.request({ cmd: 'experiment', name: 'int8', args: { shapes, tokens: [1, 32] } }));
    await safe('widen16', () => fresh.request({ cmd: 'experiment', name: 'widen16', args: { values: 16 * MB } }));
  } finally {
    await fresh.close();
  }
  await safe('prefillRealLengthTorch', () => torchPrefillAtRealLength(pool, cfg));
}

const REAL_PROMPT = 2074; // 8 frames × 257 video tokens + an 18-token prompt

/** PyTorch part of the real-length prefill: one 2074-token prefill, 2 threads, eager and sdpa. */
async function torchPrefillAtRealLength(pool: Pool, cfg: BenchConfig): Promise<Record<string, unknown>> {
  const key = `prefill@${REAL_PROMPT}`;
  const stage: StageSpec = { kind: 'prefill', ids: textIds(cfg.config, REAL_PROMPT) };
  const out: Record<string, unknown> = {};
  const torch = pool.workers.get('torch');
  if (!torch) return out;
  await torch.request({ cmd: 'prepare', key, stage });
  try {
    for (const attn of ['eager', 'sdpa'] as const) out[`torch-2t-${attn}`] = await torch.request<MemoryResult>({ cmd: 'memory', key, threads: 2, attn });
  } finally {
    await torch.request({ cmd: 'release', key });
  }
  return out;
}

/**
 * tfjs part, each in a fresh process that loads the slice: one 2074-token prefill on wasm with the
 * native matmul (stock wasm would need many minutes to get there), then, if it survived, its activation
 * peak (tf.profile). With --real-prefill-cpu also the same on the cpu backend with the native matmul,
 * whose tensors live in the JS heap rather than the 4 GiB wasm heap: the activation peak the wasm heap
 * would have to hold (1.5–3.5 minutes on 2 cores, so not by default).
 */
async function tfjsPrefillAtRealLength(cfg: BenchConfig, dir: string, opts: Options, log: fs.WriteStream): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const threads = Math.max(0, ...opts.nativeThreads);
  const key = `prefill@${REAL_PROMPT}`;
  const stage: StageSpec = { kind: 'prefill', ids: textIds(cfg.config, REAL_PROMPT) };
  // stock wasm (head-by-head attention keeps one head's scores at a time), then the native columns
  const runs: Array<{ backend: string; native: boolean }> = [{ backend: 'wasm', native: false }];
  if (threads > 0) runs.push({ backend: 'wasm', native: true }, ...(opts.realPrefillCpu ? [{ backend: 'cpu', native: true }] : []));
  if (tfjsNodeAvailable()) runs.push({ backend: 'tensorflow', native: false });
  for (const { backend, native } of runs) {
    const name = native ? `tfjs-${backend}+native-${threads}t` : `tfjs-${backend}`;
    progress(`experiment prefill of ${REAL_PROMPT} tokens on ${name} (fresh process)`);
    const env = { ...process.env, VIDEO_LLAVA_BLAS_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads), TF_CPP_MIN_LOG_LEVEL: '2' };
    const w = new Worker(name, process.execPath, ['--expose-gc', TS_WORKER, '--backend', backend, ...(native ? ['--native'] : [])], log, env);
    const r: Record<string, unknown> = {};
    try {
      r.hello = await w.request<Hello>({ cmd: 'hello' });
      r.load = await w.request<LoadResult>({ cmd: 'load', dir });
      await w.request({ cmd: 'prepare', key, stage });
      try {
        r.run = await w.request<RunResult>({ cmd: 'run', key, minMs: 0 });
        r.memory = await w.request<MemoryResult>({ cmd: 'memory', key });
      } catch (e) {
        r.error = e instanceof Error ? e.message.split('\n')[0] : String(e);
      }
      if (w.alive) r.stats = await w.request<StatsResult>({ cmd: 'stats' }).catch(() => undefined);
    } catch (e) {
      r.error = e instanceof Error ? e.message.split('\n')[0] : String(e);
    } finally {
      await w.close();
    }
    out[name] = r;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Extrapolation to the full Video-LLaVA-7B

function extrapolate(slice: ConfigResult, sliceCfg: BenchConfig, experiments: Record<string, unknown>): Extrapolation | undefined {
  const c = sliceCfg.config;
  const full = full7bConfig(sliceCfg);
  const stage = (key: string) => slice.stages.find((s) => s.key === key);
  const vision = stage('vision');
  const projector = stage('projector');
  const prefill = stage('prefill');
  const decodes = slice.stages.filter((s) => s.kind === 'decode');
  const decode = decodes[decodes.length - 1];
  if (!vision || !projector || !prefill || !decode) return undefined;
  const frames = 8;
  const promptTokens = 2074; // 8 × 257 video tokens + an 18-token prompt
  const variants = Object.keys(vision.variants);
  const ratio = (a: Gemm[], b: Gemm[]) => stageFlops(a) / stageFlops(b);
  const rows: Extrapolation['rows'] = [];
  const add = (item: string, unit: string, f: (v: string) => number) => rows.push({ item, unit, values: Object.fromEntries(variants.map((v) => [v, f(v)])) });
  const med = (s: StageResult, v: string) => s.variants[v]?.msPerCall.median ?? NaN;

  // Per-layer figures (what the scaling uses).
  const visionLayerFlops = stageFlops(visionGemms(c, 1, 1)) - stageFlops(visionGemms(c, 1, 0));
  add('CLIP-L layer, one frame (257 tokens)', 'ms', (v) => (med(vision, v) / vision.frames!) * (visionLayerFlops / (vision.flops / vision.frames!)));
  const layerPrefillFlops = stageFlops(decoderGemms(c, prefill.tokens!, 0, 1)) - stageFlops(decoderGemms(c, prefill.tokens!, 0, 0));
  add(`Llama-7B layer, prefill of ${prefill.tokens} tokens`, 'ms', (v) => med(prefill, v) * (layerPrefillFlops / prefill.flops));
  const layerDecodeFlops = stageFlops(decoderGemms(c, 1, decode.past!, 1)) - stageFlops(decoderGemms(c, 1, decode.past!, 0));
  add(`Llama-7B layer, one decode step at cache ${decode.past}`, 'ms', (v) => med(decode, v) * (layerDecodeFlops / decode.flops));

  // Full-model stages, each scaled from the slice by analytic FLOPs at the same widths.
  // transformers runs all 24 CLIP layers for feature layer −2; the TypeScript tower stops after layer 23.
  const towerLayers = (v: string) => (v.startsWith('tfjs') ? 23 : 24);
  const visionFull = (v: string) => med(vision, v) * ratio(visionGemms(full, frames, towerLayers(v)), visionGemms(c, vision.frames!));
  const projFull = (v: string) => med(projector, v) * ratio(projectorGemms(full, frames), projectorGemms(c, projector.frames!));
  const prefillFull = (v: string) => med(prefill, v) * ratio(decoderGemms(full, promptTokens, 0), decoderGemms(c, prefill.tokens!, 0));
  const decodeFull = (v: string) => med(decode, v) * ratio(decoderGemms(full, 1, decode.past!), decoderGemms(c, 1, decode.past!));
  add(`video tower, ${frames} frames`, 's', (v) => visionFull(v) / 1000);
  add(`projector, ${frames} frames`, 's', (v) => projFull(v) / 1000);
  add(`prefill, ${promptTokens}-token video prompt`, 's', (v) => prefillFull(v) / 1000);
  // Where one 2074-token prefill through the slice was measured, scale that instead (same M, no guess).
  const real = (experiments.prefillRealLengthTorch ?? {}) as Record<string, MemoryResult | undefined>;
  const realTfjs = (experiments.prefillRealLengthTfjs ?? {}) as Record<string, { run?: RunResult } | undefined>;
  const measured = (v: string) => real[v]?.ms ?? realTfjs[v]?.run?.ms;
  if (variants.some((v) => measured(v) !== undefined)) {
    const r = ratio(decoderGemms(full, promptTokens, 0), decoderGemms(c, promptTokens, 0));
    add(`prefill, ${promptTokens}-token prompt, from a measured ${promptTokens}-token slice prefill`, 's', (v) => (measured(v) !== undefined ? (measured(v)! * r) / 1000 : NaN));
  }
  add('time to first token (tower + projector + prefill)', 's', (v) => (visionFull(v) + projFull(v) + prefillFull(v)) / 1000);
  add(`decode at cache ${decode.past}`, 'tokens/s', (v) => 1000 / decodeFull(v));
  const fullBytes = 4 * paramCounts(full).total;
  add(`load ${(fullBytes / 1e9).toFixed(1)} GB of float32 weights`, 's', (v) => {
    const l = slice.load[v.startsWith('torch') ? 'torch' : v];
    return l ? fullBytes / MB / l.mbPerS : NaN;
  });
  return {
    assumptions: [
      `Scaled from the slice (${vision.frames} frame(s), prefill of ${prefill.tokens} tokens, decode at cache ${decode.past}) by the ratio of analytic matmul FLOPs at the same widths: 24 CLIP layers (23 for TypeScript, which stops at the feature layer), 32 decoder layers, ${frames} frames, a ${promptTokens}-token prompt.`,
      'Linear scaling assumes the same GEMM efficiency at the full sizes; prefill at 2074 tokens uses bigger GEMMs (M = 2074) than the slice measured (PyTorch gets faster per FLOP there, tfjs-wasm roughly does not: see the roofline).',
      'Ignores memory: float32 7B weights (29.5 GB) exceed both the 4 GiB wasm heap and a 24 GB machine; see the memory section.',
    ],
    rows,
  };
}

// ---------------------------------------------------------------------------------------------------
// Main

function hostInfo() {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, memGB: os.totalmem() / 1024 ** 3, os: `${os.type()} ${os.release()}` };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  fs.mkdirSync(opts.out, { recursive: true });
  const log = fs.createWriteStream(path.join(opts.out, 'workers.log'));
  const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-bench-'));
  if (opts.torch && !opts.python) progress('no Python reference environment found (set VIDEO_LLAVA_REF_PYTHON): PyTorch columns are left out');
  const results: Results = {
    meta: {
      date: new Date().toISOString(),
      durationS: 0,
      host: hostInfo(),
      loadavgStart: os.loadavg(),
      loadavgEnd: [],
      repeats: opts.repeats,
      warmup: opts.warmup,
      minMs: opts.minMs,
      args: process.argv.slice(2),
      variants: [],
      nativeColumn: '',
      python: opts.torch ? opts.python : null,
    },
    configs: [],
    experiments: {},
  };
  const configs = loadBenchConfigs().filter((c) => opts.configs.includes(c.name));
  try {
    for (const cfg of configs) {
      const r = await benchConfig(cfg, opts, log, tmpRoot, results.experiments);
      results.configs.push(r);
      if (results.meta.variants.length === 0) {
        results.meta.variants = Object.keys(r.stages[0]?.variants ?? {}).map((name) => ({ name, worker: name.startsWith('torch') ? 'torch' : name }));
        const natives = Object.entries(r.hellos).filter(([k]) => k.includes('+native'));
        results.meta.nativeColumn = natives.length === 0 ? 'not probed (--native-threads none)' : natives.map(([k, h]) => `${k}: ${h.native?.enabled ? 'enabled' : 'left out'} (${h.native?.detail ?? 'no reply'})`).join('; ');
      }
      if (cfg.name === 'slice7b') {
        results.extrapolation = extrapolate(r, cfg, results.experiments);
      }
    }
    if (opts.experiments) {
      progress('experiment heapCeiling (fills the wasm heap in a fresh process)');
      results.experiments.heapCeiling = await oneShot('heap-ceiling', log);
      progress('experiment xnnpackPacking (fresh process)');
      results.experiments.xnnpackPacking = await oneShot('xnnpack-packing', log);
    }
  } finally {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  }
  results.meta.durationS = (Date.now() - t0) / 1000;
  results.meta.loadavgEnd = os.loadavg();
  fs.writeFileSync(path.join(opts.out, 'latest.json'), JSON.stringify(results, null, 1) + '\n');
  fs.writeFileSync(path.join(opts.out, 'latest.md'), renderMarkdown(results));
  process.stdout.write(renderConsole(results));
  log.end();
  progress(`done in ${results.meta.durationS.toFixed(0)} s; wrote ${path.join(opts.out, 'latest.json')} and latest.md`);
}

/** A one-shot experiment in a fresh tfjs process (a fresh wasm heap): it prints one reply and exits. */
async function oneShot(name: string, log: fs.WriteStream): Promise<unknown> {
  const { execFileSync } = await import('child_process');
  try {
    const out = execFileSync(process.execPath, [TS_WORKER, '--backend', 'wasm', '--experiment', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 });
    const line = out.split('\n').find((l) => l.startsWith(REPLY_PREFIX));
    if (!line) return { error: 'no reply' };
    return (JSON.parse(line.slice(REPLY_PREFIX.length)) as { result: unknown }).result;
  } catch (e) {
    log.write(`[${name}] ${String(e)}\n`);
    return { error: String(e instanceof Error ? e.message : e).split('\n')[0] };
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
