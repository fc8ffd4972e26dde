/** The shape of benchmarks/results/latest.json. */
import { ParamCounts } from './configs';
import { GemmResult, Hello, LoadResult, MemoryResult, Probe, StatsResult } from './protocol';
import { Summary } from './stats';

/** A column of the tables: one implementation with its settings. */
export interface Variant {
  name: string; // "tfjs-wasm", "tfjs-wasm+native", "torch-1t-eager", …
  worker: string; // which worker runs it
  threads?: number;
  attn?: 'eager' | 'sdpa';
}

export type StageUnit = 'ms/frame' | 'tokens/s';

export interface VariantStage {
  msPerCall: Summary; // per call of the stage (all frames / all tokens)
  value: Summary; // in the stage's unit
  gflops: number; // analytic FLOPs / median time
  iters: number; // inner iterations per repeat
  probe: Probe;
  memory?: MemoryResult;
  /** Against the tfjs-wasm output: |ΔΣ|y|| / Σ|y| and max |Δ| over the first 8 values. */
  agreement?: { relAbsSum: number; maxHeadDiff: number };
  /** tfjs-wasm median time / this variant's median time (how many times longer tfjs takes). */
  tfjsTimeRatio?: number;
}

export interface GemmBound {
  /** Σ over the stage's GEMMs of count × measured time of that shape, per variant, in ms. */
  ms: Record<string, number>;
}

export interface StageResult {
  key: string; // vision, projector, prefill, decode@256
  kind: 'vision' | 'projector' | 'prefill' | 'decode';
  unit: StageUnit;
  frames?: number;
  tokens?: number;
  past?: number;
  flops: number;
  variants: Record<string, VariantStage>;
  gemmBound?: GemmBound;
}

export interface RooflineRow {
  label: string;
  shape: string; // batch×m×k×n, T = right operand transposed
  batch: number;
  m: number;
  k: number;
  n: number;
  transB: boolean;
  flops: number;
  /** GFLOPS per layout/variant: tfjs-model (stock wasm, as the model runs it), native-Nt, torch-1t, torch-2t. */
  gflops: Record<string, number | null>;
  raw: Record<string, GemmResult | { error: string }>;
}

export interface LoadRow extends LoadResult {
  mbPerS: number;
  /** (peak RSS during the load − RSS before) / float32 bytes of the weights. */
  peakOverWeights: number;
}

export interface ConfigResult {
  name: string;
  description: string;
  params: ParamCounts;
  weightBytes: number;
  checkpoint: { dir: string; bytes: number; written: boolean; writeMs?: number };
  hellos: Record<string, Hello>;
  load: Record<string, LoadRow>;
  stages: StageResult[];
  roofline: RooflineRow[];
  workerStats: Record<string, StatsResult>;
  errors: string[];
}

export interface Extrapolation {
  assumptions: string[];
  rows: Array<{ item: string; unit: string; values: Record<string, number> }>;
}

export interface Results {
  meta: {
    date: string;
    durationS: number;
    host: { cpu: string; cores: number; memGB: number; os: string };
    loadavgStart: number[];
    loadavgEnd: number[];
    repeats: number;
    warmup: number;
    minMs: number;
    args: string[];
    variants: Variant[];
    nativeColumn: string;
    python: string | null;
  };
  configs: ConfigResult[];
  experiments: Record<string, unknown>;
  extrapolation?: Extrapolation;
}
