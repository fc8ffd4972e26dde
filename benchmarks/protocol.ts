/**
 * The line protocol between the orchestrator (run.ts) and its workers (tfjs_bench.ts, torch_bench.py).
 *
 * The orchestrator writes one JSON request per line to a worker's stdin; the worker answers each with one
 * line `@@bench <json>` on stdout ({id, ok: true, result} or {id, ok: false, error}). Any other output
 * line is a log line. Workers time only the work itself (never the pipe), so the protocol adds nothing
 * to the numbers. torch_bench.py implements the same commands; keep the two in step.
 */

export const REPLY_PREFIX = '@@bench ';

/** The stages every worker can run; inputs are rebuilt on each side from names (see inputs.ts). */
export type StageSpec =
  | { kind: 'vision'; frames: number } // video tower, every layer, over `frames` frames
  | { kind: 'projector'; frames: number } // projector over `frames` frames of tower features
  | { kind: 'prefill'; ids: number[] } // text prompt, fresh cache, logits for the last position
  | { kind: 'decode'; past: number; ids: number[] }; // one token after a synthetic cache of `past` positions

export type Attn = 'eager' | 'sdpa';

export type Request =
  | { id: number; cmd: 'hello' }
  | { id: number; cmd: 'load'; dir: string }
  | { id: number; cmd: 'prepare'; key: string; stage: StageSpec }
  | { id: number; cmd: 'run'; key: string; threads?: number; attn?: Attn; minMs: number }
  | { id: number; cmd: 'memory'; key: string; threads?: number; attn?: Attn }
  | { id: number; cmd: 'release'; key: string }
  | { id: number; cmd: 'unload' }
  | { id: number; cmd: 'gemm'; batch: number; m: number; k: number; n: number; transB: boolean; layout: GemmLayout; threads?: number; repeats: number }
  | { id: number; cmd: 'experiment'; name: string; args: Record<string, unknown> }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'exit' };

/**
 * model: the product as the worker's model issues it. tfjs: a Linear (batch 1) is x·W with W stored
 * [in, out] (arranged at load time); attention products (batch = heads) go one 2-D product per head on
 * stock wasm where the model does (src/layers/attention.ts, useHeadByHead), else one batched call with the
 * right operand transposed as in the spec. torch: F.linear's x·Wᵀ and torch.matmul. A worker started with
 * --native measures tf.matMul through the native kernels.
 */
export type GemmLayout = 'model';

export interface Hello {
  impl: string; // "tfjs-wasm", "torch"
  versions: Record<string, string>;
  backend?: string;
  threads?: number;
  /** Set when the worker turned on a native matmul (enableNativeMatmul); else why not. */
  native?: { enabled: boolean; detail: string };
}

export interface LoadResult {
  ms: number; // until every weight byte has been read (PyTorch: from_pretrained + one read per page)
  fromPretrainedMs?: number; // PyTorch: from_pretrained alone (it memory-maps the file)
  touchMs?: number; // PyTorch: the page-touching pass
  bytes: number; // tensor bytes in the checkpoint
  rssBeforeMB: number;
  rssPeakMB: number; // VmHWM during the load (reset just before)
  rssAfterMB: number;
  wasmHeapMB?: number;
  tensorMB?: number; // tf.memory().numBytes after the load
}

/** A few numbers of a stage's output, so the orchestrator can check both sides computed the same thing. */
export interface Probe {
  absSum: number; // Σ|y| over the whole output, in float64
  head: number[]; // the first 8 values
  shape: number[];
}

export interface RunResult {
  ms: number; // per iteration
  iters: number;
  probe: Probe;
}

export interface MemoryResult {
  /** Time of this one (profiled) call. */
  ms: number;
  /** Peak of live tensor bytes during one run, above what was live before it (tf.profile); tfjs only. */
  peakTensorMB?: number;
  /** VmHWM − VmRSS over one run (VmHWM reset just before). */
  stagePeakRssDeltaMB: number;
  wasmHeapMB?: number;
}

export interface GemmResult {
  ms: number[]; // each timed repeat
  gflops: number; // from the fastest repeat
}

export interface StatsResult {
  rssMB: number;
  peakRssMB: number; // VmHWM since the last reset, or since start
  maxRssMB: number; // getrusage maximum over the whole process life
  wasmHeapMB?: number;
  tensorMB?: number;
  /** matMul calls served by the native kernel / the stock kernel (tfjs with src/native only). */
  nativeCalls?: { native: number; stock: number };
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** What benchmarks/browser.ts asks the page (benchmarks/web/bench.ts) to time, and its answer. */
export interface PageBenchRequest {
  backend: string;
  model: string;
  stages: Array<{ key: string; stage: StageSpec }>;
  repeats: number;
  minMs: number;
}

export interface PageBenchResult {
  backend: string;
  loadMs: number;
  /** ms of each repeat, per stage */
  stages: Record<string, number[]>;
  probes: Record<string, number>;
}
