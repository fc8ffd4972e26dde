/**
 * Evaluation across machines on a BullMQ queue in Redis.
 *
 *   producer  (`video-llava eval --queue redis://…`) puts every manifest item that has no result line yet on
 *             the queue, one job per group of consecutive items about the same media (up to 8: the video is
 *             decoded once, on one worker, and its questions batch together; job id = run key + hash of the
 *             items' ids, so adding a group twice is a no-op), then gathers finished jobs into the output
 *             JSONL: append + fsync first, remove the job from Redis second. A producer killed between the two finds the line on restart and only
 *             removes the job, so every item gets exactly one line. The output file is the state, as in a
 *             local run; a rerun resumes.
 *   worker    (`video-llava worker --queue redis://… --model DIR`) loads its model once and runs jobs through
 *             the same ItemRunner as a local run (decode overlap, batching across its in-flight jobs). An
 *             item's own error is a normal result line; a worker that dies leaves its jobs locked, and once
 *             the lock expires (lockMs) BullMQ's stalled-job check hands them to another worker, at most
 *             maxStalled times; after that the job fails and the producer writes its error line.
 *
 * The run key is derived from the output file (host + absolute path): producers of different outputs can
 * share a queue and each gathers only its own jobs.
 */
import { createHash } from 'crypto';
import * as os from 'os';
import * as path from 'path';
import { Worker as Thread } from 'worker_threads';
import { Job, Queue } from 'bullmq';
import { QueueError } from '../errors';
import { EvalItem, readManifest } from './manifest';
import { ItemResult, ResultsWriter } from './results';
import { EvalGenerationOptions, ItemRunner, defaultBatchSize, failed } from './runner';
import { EvalOptions, EvalRunResult, LoadedModel, loadModel, resolveGeneration } from './run';
import { summarize } from './score';
import type { FromMain, ThreadConfig, ToMain } from './queue_thread';
import { connectRedis, redactUrl } from './redis';

export { connectRedis, redactUrl };

export const DEFAULT_QUEUE_NAME = 'video-llava-eval';

export interface QueueConnection {
  /** redis://[user:password@]host[:port][/db] (rediss:// for TLS). */
  url: string;
  /** The BullMQ queue name (default "video-llava-eval"); producer and workers must agree. */
  name?: string;
}

/** One job: consecutive items about the same media (decoded once, batched together on one worker). */
interface JobData {
  runKey: string;
  items: EvalItem[];
  generation: EvalGenerationOptions;
}

/** Most items in one job: a corpus's questions about one video stay together up to this many. */
export const MAX_ITEMS_PER_JOB = 8;

/** Consecutive items with the same images and videos, at most MAX_ITEMS_PER_JOB a group. */
export function mediaGroups(items: readonly EvalItem[]): EvalItem[][] {
  const groups: EvalItem[][] = [];
  let key = '';
  for (const item of items) {
    const k = JSON.stringify([item.images, item.videos]);
    const last = groups[groups.length - 1];
    if (last && k === key && last.length < MAX_ITEMS_PER_JOB) last.push(item);
    else groups.push([item]);
    key = k;
  }
  return groups;
}

export interface QueueEvalOptions extends Omit<EvalOptions, 'model' | 'batchSize' | 'concurrency' | 'decoders'> {
  queue: QueueConnection;
  /** Tries per job when a worker's processing throws (not an item error: those are results); default 2. */
  attempts?: number;
  /** How often finished jobs are gathered (default 250 ms). */
  pollMs?: number;
  /** Give up after Redis has failed every request for this long (default 15 000 ms). */
  redisTimeoutMs?: number;
}

export function runKeyFor(output: string): string {
  return createHash('sha256').update(`${os.hostname()}\0${path.resolve(output)}`).digest('hex').slice(0, 12);
}

/** The job id of a group: its items' ids (a job for the same group is added once). */
export function jobIdFor(runKey: string, ids: readonly string[]): string {
  return `${runKey}-${createHash('sha256').update(ids.join('\0')).digest('hex').slice(0, 24)}`;
}

/** The producer: queue the pending items, gather their results into the output file. */
export async function evaluateOnQueue(options: QueueEvalOptions): Promise<EvalRunResult> {
  const items = typeof options.manifest === 'string' ? await readManifest(options.manifest) : options.manifest;
  const generation = resolveGeneration(options.generation);
  const url = redactUrl(options.queue.url);
  const pollMs = options.pollMs ?? 250;
  const redisTimeoutMs = options.redisTimeoutMs ?? 15_000;
  const t0 = Date.now();
  const redis = await connectRedis(options.queue.url, 'producer');
  const queue = new Queue<JobData, ItemResult[]>(options.queue.name ?? DEFAULT_QUEUE_NAME, { connection: redis });
  queue.on('error', () => undefined); // surfaces as failed requests below
  let writer: ResultsWriter | undefined;
  try {
    writer = ResultsWriter.open(options.output, { dropErrors: options.retryErrors });
    const results = writer.results;
    const runKey = runKeyFor(options.output);
    const wanted = new Set(items.map((i) => i.id));
    const resumed = items.filter((i) => results.has(i.id)).length;
    let ranNow = 0;
    let errors = 0;
    let lastOk = Date.now();
    const call = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
      try {
        const v = await f();
        lastOk = Date.now();
        return v;
      } catch (e) {
        if (Date.now() - lastOk > redisTimeoutMs) {
          throw new QueueError(url, `Redis failed every request for ${redisTimeoutMs} ms (${what}: ${(e as Error).message}); ` + `the ${resumed + ranNow} finished items are in ${options.output}: rerun to resume`);
        }
        return undefined;
      }
    };

    const gather = async (): Promise<void> => {
      for (const state of ['completed', 'failed'] as const) {
        const jobs = (await call(`listing ${state} jobs`, () => queue.getJobs([state], 0, -1))) ?? [];
        const mine = jobs.filter((j): j is Job<JobData, ItemResult[]> => !!j && typeof j.id === 'string' && j.id.startsWith(`${runKey}-`));
        const lines: ItemResult[] = [];
        for (const job of mine) {
          const got = state === 'completed' ? job.returnvalue.map((r) => ({ ...r, attempts: job.attemptsStarted })) : lostJob(job);
          // an item can be in two jobs (groups re-formed on resume): the first line written wins
          for (const line of got) if (wanted.has(line.id) && !results.has(line.id) && !lines.some((l) => l.id === line.id)) lines.push(line);
        }
        writer!.append(lines); // durable before the jobs go
        for (const line of lines) {
          ranNow++;
          if (line.error) errors++;
          const elapsedMs = Date.now() - t0;
          const rate = (ranNow / elapsedMs) * 1000;
          options.onProgress?.({ done: resumed + ranNow, total: items.length, ranNow, errors, elapsedMs, rate, etaMs: ((items.length - resumed - ranNow) / rate) * 1000, last: line });
        }
        for (const job of mine) await call('removing a gathered job', () => job.remove());
      }
    };

    options.onResume?.({
      finished: resumed,
      pending: items.length - resumed,
      droppedBytes: writer.opened.droppedBytes,
      duplicates: writer.opened.duplicates.length,
      foreign: [...results.keys()].filter((id) => !wanted.has(id)).length,
    });
    await gather(); // results an earlier producer of this file left in Redis
    const groups = mediaGroups(items.filter((i) => !results.has(i.id)));
    for (let s = 0; s < groups.length; s += 500) {
      const chunk = groups.slice(s, s + 500).map((group) => ({
        name: 'items',
        data: { runKey, items: group, generation },
        opts: { jobId: jobIdFor(runKey, group.map((i) => i.id)), attempts: options.attempts ?? 2, backoff: { type: 'fixed', delay: 1000 }, removeOnComplete: false, removeOnFail: false },
      }));
      const added = await call('adding jobs', () => queue.addBulk(chunk));
      if (!added) s -= 500; // Redis hiccup: try the chunk again (call() throws once it has been down too long)
    }
    while (items.some((i) => !results.has(i.id)) && !options.signal?.aborted) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      await gather();
    }
    const finished = items.flatMap((i) => results.get(i.id) ?? []);
    return { summary: summarize(finished), ranNow, resumed, aborted: finished.length < items.length, elapsedMs: Date.now() - t0 };
  } finally {
    writer?.close();
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}

/** The result lines of a job that BullMQ gave up on (worker lost too often, or processing threw every try). */
function lostJob(job: Job<JobData, ItemResult[]>): ItemResult[] {
  const reason = job.failedReason || 'failed without a reason';
  const stalled = /stalled/i.test(reason);
  const error = Object.assign(new Error(stalled ? `${reason} (the worker running it was lost ${job.stalledCounter} time(s))` : reason), { name: stalled ? 'StalledJobError' : 'WorkerError' });
  return job.data.items.map((item) => ({ ...failed(item, error), attempts: job.attemptsStarted }));
}

export interface WorkerOptions {
  queue: QueueConnection;
  model: string | LoadedModel;
  /** Items per generate() call (default: defaultBatchSize in runner.ts). */
  batchSize?: number;
  /** Jobs (groups of items about one video) held at once (default 2 × batchSize). */
  concurrency?: number;
  decoders?: number;
  /** A job's lock, renewed by the queue thread while the item runs; a worker gone this long is taken for dead (default 60 000 ms). */
  lockMs?: number;
  /** How often locks are checked for stalled jobs (default 30 000 ms). */
  stalledMs?: number;
  /** Times a job may be recovered from a lost worker before it fails (default 2). */
  maxStalled?: number;
  signal?: AbortSignal;
  onEvent?: (e: WorkerEvent) => void;
}

export type WorkerEvent =
  | { kind: 'ready'; name: string }
  | { kind: 'start'; id: string }
  | { kind: 'done'; id: string; ms: number; error?: string }
  | { kind: 'error'; message: string };

/**
 * A worker: runs jobs until the signal fires, then finishes the jobs it holds and returns. BullMQ runs in a
 * worker thread (queue_thread.ts: it renews the jobs' locks while a forward blocks this thread); the model
 * runs here.
 */
export async function runWorker(options: WorkerOptions): Promise<{ processed: number }> {
  (await connectRedis(options.queue.url, 'worker')).disconnect(); // fail fast, before loading a model
  const loaded = typeof options.model === 'string' ? await loadModel(options.model) : options.model;
  try {
    const batchSize = options.batchSize ?? defaultBatchSize(loaded.model);
    const runner = new ItemRunner(loaded.model, loaded.processor, loaded.generationConfig, { batchSize, decoders: options.decoders });
    const config: ThreadConfig = {
      url: options.queue.url,
      name: options.queue.name ?? DEFAULT_QUEUE_NAME,
      workerName: `${os.hostname()}:${process.pid}`,
      concurrency: options.concurrency ?? 2 * batchSize,
      lockMs: options.lockMs ?? 60_000,
      stalledMs: options.stalledMs ?? 30_000,
      maxStalled: options.maxStalled ?? 2,
    };
    return await serve(startThread(config), runner, config.workerName, options);
  } finally {
    if (typeof options.model === 'string') loaded.model.dispose();
  }
}

/** Runs the thread's jobs through the runner until the signal fires and the thread has closed. */
function serve(thread: Thread, runner: ItemRunner, workerName: string, options: WorkerOptions): Promise<{ processed: number }> {
  const post = (m: FromMain) => thread.postMessage(m);
  let processed = 0;
  return new Promise((resolve, reject) => {
    const stop = () => post({ type: 'close' });
    thread.on('message', (m: ToMain) => {
      if (m.type === 'ready') {
        options.onEvent?.({ kind: 'ready', name: workerName });
        if (options.signal?.aborted) stop();
        else options.signal?.addEventListener('abort', stop, { once: true });
      } else if (m.type === 'job') {
        const { items, generation } = m.data as JobData;
        const run = async (item: EvalItem): Promise<ItemResult> => {
          const t = Date.now();
          options.onEvent?.({ kind: 'start', id: item.id });
          const result = { ...(await runner.run(item, generation))!, worker: workerName }; // no signal given: never null
          processed++;
          options.onEvent?.({ kind: 'done', id: item.id, ms: Date.now() - t, error: result.error?.message });
          return result;
        };
        void Promise.all(items.map(run)).then((value) => post({ type: 'result', key: m.key, value }));
      } else if (m.type === 'error') {
        options.onEvent?.({ kind: 'error', message: m.message });
      } else if (m.type === 'fatal') {
        reject(new QueueError(redactUrl(options.queue.url), `the queue thread could not start (${m.name}: ${m.message})`));
      } else if (m.type === 'closed') {
        options.signal?.removeEventListener('abort', stop);
        resolve({ processed });
      }
    });
    thread.on('error', (e) => reject(new QueueError(redactUrl(options.queue.url), `the queue thread failed: ${e.message}`)));
    thread.on('exit', () => resolve({ processed }));
  });
}

/** Starts queue_thread (its .ts source under ts-jest or test/helpers/ts_register.js, else the compiled .js). */
function startThread(config: ThreadConfig): Thread {
  const file = path.join(__dirname, `queue_thread${path.extname(__filename)}`);
  // An eval'd bootstrap: a .ts file needs a transpile hook, which a plain Worker(file) would not have.
  const boot = [
    "const { workerData } = require('worker_threads');",
    "if (workerData.file.endsWith('.ts')) {",
    "  const ts = require(require.resolve('typescript', { paths: [workerData.file] }));",
    "  const fs = require('fs');",
    "  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };",
    "  require.extensions['.ts'] = (m, f) => m._compile(ts.transpileModule(fs.readFileSync(f, 'utf8'), { compilerOptions, fileName: f }).outputText, f);",
    '}',
    'require(workerData.file);',
  ].join('\n');
  return new Thread(boot, { eval: true, workerData: { file, queueThread: config } });
}
