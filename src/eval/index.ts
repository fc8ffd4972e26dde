/**
 * Evaluation over a corpus (`video-llava eval` / `worker`). The queue functions load BullMQ and ioredis only
 * when called, so that importing the package does not.
 */
import type { QueueEvalOptions, WorkerOptions } from './queue';
import type { EvalRunResult } from './run';

export { parseManifest, readManifest } from './manifest';
export type { EvalItem } from './manifest';
export { ResultsWriter, readResults } from './results';
export type { ItemResult, OpenedResults } from './results';
export { evaluate, loadModel, summarizeFile } from './run';
export type { EvalOptions, EvalProgress, EvalRunResult, LoadedModel } from './run';
export { DEFAULT_GENERATION, defaultBatchSize } from './runner';
export type { EvalGenerationOptions } from './runner';
export { normalizeAnswer, score, summarize, summaryTable } from './score';
export type { EvalSummary, Tally } from './score';
export type { QueueConnection, QueueEvalOptions, WorkerEvent, WorkerOptions } from './queue';

/** The producer of a queue run (see queue.ts): queues the pending items, gathers results into the output. */
export async function evaluateOnQueue(options: QueueEvalOptions): Promise<EvalRunResult> {
  return (await import('./queue')).evaluateOnQueue(options);
}

/** A queue worker (see queue.ts): runs items until options.signal fires. */
export async function runWorker(options: WorkerOptions): Promise<{ processed: number }> {
  return (await import('./queue')).runWorker(options);
}
