/**
 * evaluate(): a manifest through one model on this machine, resumable.
 *
 * The output JSONL is the state (results.ts): items with a line are skipped, every finished item is
 * appended and fsync'd at once, so rerunning the same call after a crash or Ctrl-C continues where it
 * stopped, without duplicates and without losing a finished item. The model is loaded once; items flow
 * through ItemRunner (runner.ts), which decodes the next videos while the model works on the current
 * batch. `concurrency` items are in flight at once (default 2 × batchSize): the next batch decodes while
 * the model runs this one.
 */
import * as fs from 'fs';
import { resolveModel } from '../hub';
import { GenerationConfig, loadGenerationConfig } from '../generation/generate';
import { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import { VideoLlavaProcessor } from '../processing/processor';
import { InputError } from '../errors';
import { EvalItem, readManifest } from './manifest';
import { ItemResult, ResultsWriter, readResults } from './results';
import { DEFAULT_GENERATION, EvalGenerationOptions, ItemRunner, defaultBatchSize } from './runner';
import { EvalSummary, summarize } from './score';

export interface LoadedModel {
  model: VideoLlavaForConditionalGeneration;
  processor: VideoLlavaProcessor;
  generationConfig: GenerationConfig;
}

export interface EvalProgress {
  /** Items of the manifest with a result line (resumed ones included). */
  done: number;
  total: number;
  /** Finished by this call, and how many of those failed. */
  ranNow: number;
  errors: number;
  elapsedMs: number;
  /** Items per second over this call; undefined before the first one. */
  rate?: number;
  etaMs?: number;
  last?: ItemResult;
}

export interface EvalOptions {
  /** A manifest file (manifest.ts) or its parsed items. */
  manifest: string | EvalItem[];
  /** The output JSONL (created, or resumed when it exists). */
  output: string;
  /** A checkpoint directory or Hub id, or a model already loaded (it is not disposed then). */
  model: string | LoadedModel;
  generation?: Partial<EvalGenerationOptions>;
  /** Items per generate() call (default: defaultBatchSize in runner.ts, 4 for small models, 1 at 7B). */
  batchSize?: number;
  /** Items in flight (default 2 × batchSize: a batch running, the next one decoding). */
  concurrency?: number;
  /** Videos decoded at once (default 2). */
  decoders?: number;
  /** Run the items whose line records an error again (their lines are removed first). */
  retryErrors?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: EvalProgress) => void;
  /** Called once after the output is opened: what was resumed and repaired. */
  onResume?: (info: { finished: number; pending: number; droppedBytes: number; duplicates: number; foreign: number }) => void;
}

export interface EvalRunResult {
  /** Over every manifest item that has a line (this call's and earlier ones). */
  summary: EvalSummary;
  ranNow: number;
  resumed: number;
  aborted: boolean;
  elapsedMs: number;
}

export async function loadModel(idOrDir: string, options: { offline?: boolean; revision?: string } = {}): Promise<LoadedModel> {
  const dir = await resolveModel(idOrDir, options);
  const processor = await VideoLlavaProcessor.fromPretrained(dir);
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(dir);
  return { model, processor, generationConfig: await loadGenerationConfig(dir) };
}

export function resolveGeneration(g: Partial<EvalGenerationOptions> = {}): EvalGenerationOptions {
  const out = { ...DEFAULT_GENERATION, ...Object.fromEntries(Object.entries(g).filter(([, v]) => v !== undefined)) } as EvalGenerationOptions;
  if (!(Number.isInteger(out.maxNewTokens) && out.maxNewTokens >= 1)) throw new InputError('maxNewTokens', `expected an integer ≥ 1, found ${out.maxNewTokens}`);
  if (!(Number.isInteger(out.numFrames) && out.numFrames >= 1)) throw new InputError('numFrames', `expected an integer ≥ 1, found ${out.numFrames}`);
  return out;
}

export async function evaluate(options: EvalOptions): Promise<EvalRunResult> {
  const items = typeof options.manifest === 'string' ? await readManifest(options.manifest) : options.manifest;
  const generation = resolveGeneration(options.generation);
  const writer = ResultsWriter.open(options.output, { dropErrors: options.retryErrors });
  const t0 = Date.now();
  let loaded: LoadedModel | undefined;
  try {
    const ids = new Set(items.map((i) => i.id));
    const pending = items.filter((i) => !writer.results.has(i.id));
    const resumed = items.length - pending.length;
    options.onResume?.({
      finished: resumed,
      pending: pending.length,
      droppedBytes: writer.opened.droppedBytes,
      duplicates: writer.opened.duplicates.length,
      foreign: [...writer.results.keys()].filter((id) => !ids.has(id)).length,
    });
    let ranNow = 0;
    let errors = 0;
    if (pending.length > 0) {
      loaded = typeof options.model === 'string' ? await loadModel(options.model) : options.model;
      const batchSize = options.batchSize ?? defaultBatchSize(loaded.model);
      const concurrency = options.concurrency ?? 2 * batchSize;
      if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new InputError('concurrency', `expected an integer ≥ 1, found ${concurrency}`);
      const runner = new ItemRunner(loaded.model, loaded.processor, loaded.generationConfig, { batchSize, decoders: options.decoders, signal: options.signal });
      const started = Date.now();
      let next = 0;
      const lane = async () => {
        while (next < pending.length && !options.signal?.aborted) {
          const result = await runner.run(pending[next++], generation);
          if (!result) continue; // aborted mid-item: it runs again next time
          writer.append([result]);
          ranNow++;
          if (result.error) errors++;
          const elapsedMs = Date.now() - started;
          const rate = (ranNow / elapsedMs) * 1000;
          const left = items.length - (resumed + ranNow);
          options.onProgress?.({ done: resumed + ranNow, total: items.length, ranNow, errors, elapsedMs, rate, etaMs: (left / rate) * 1000, last: result });
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, lane));
    }
    const finished = items.flatMap((i) => writer.results.get(i.id) ?? []);
    return {
      summary: summarize(finished),
      ranNow,
      resumed,
      aborted: options.signal?.aborted === true && resumed + ranNow < items.length,
      elapsedMs: Date.now() - t0,
    };
  } finally {
    writer.close();
    if (loaded && typeof options.model === 'string') loaded.model.dispose();
  }
}

/** The summary of a results file as it stands (a finished run, or one still going). */
export function summarizeFile(file: string): { summary: EvalSummary; droppedBytes: number } {
  if (!fs.existsSync(file)) throw new InputError(file, 'results file not found');
  const read = readResults(file);
  if (read.results.size === 0 && read.droppedBytes === 0) throw new InputError(file, 'no result lines (is this an evaluation output?)');
  return { summary: summarize(read.results.values()), droppedBytes: read.droppedBytes };
}
