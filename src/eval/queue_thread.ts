/**
 * The BullMQ side of a queue worker, in a worker thread of its own (started by runWorker in queue.ts).
 *
 * Why a thread: BullMQ keeps a job ours by renewing its lock in Redis on a timer. The model runs on the main
 * thread, and one forward is one synchronous call (a 7B prefill of a long video prompt takes minutes on a
 * CPU), during which no timer of the main thread fires: the locks would expire, BullMQ would take the worker
 * for dead and hand its jobs to another, and after maxStalled such "deaths" fail them. Here the locks are
 * renewed while the model works, so only a worker that really died (or hangs) loses its jobs.
 *
 * Messages: to the main thread {ready} | {job, key, data} | {error, message} | {fatal, name, message} |
 * {closed}; from it {result, key, value} | {close}.
 */
import { parentPort, workerData } from 'worker_threads';
import { Job, Worker } from 'bullmq';
import { connectRedis } from './queue';

export interface ThreadConfig {
  url: string;
  name: string;
  workerName: string;
  concurrency: number;
  lockMs: number;
  stalledMs: number;
  maxStalled: number;
}

export type ToMain =
  | { type: 'ready' }
  | { type: 'job'; key: string; data: unknown }
  | { type: 'error'; message: string }
  | { type: 'fatal'; name: string; message: string }
  | { type: 'closed' };

export type FromMain = { type: 'result'; key: string; value: unknown } | { type: 'close' };

async function main(config: ThreadConfig): Promise<void> {
  const port = parentPort!;
  const post = (m: ToMain) => port.postMessage(m);
  const waiting = new Map<string, (value: unknown) => void>();
  let next = 0;
  let worker: Worker | undefined;
  port.on('message', (m: FromMain) => {
    if (m.type === 'result') {
      waiting.get(m.key)?.(m.value);
      waiting.delete(m.key);
    } else if (m.type === 'close') {
      void (async () => {
        await worker?.close(); // waits for the jobs in progress, whose results are still to come
        post({ type: 'closed' });
        port.close();
      })();
    }
  });
  try {
    const connection = await connectRedis(config.url, 'worker');
    worker = new Worker(
      config.name,
      (job: Job) =>
        new Promise((resolve) => {
          const key = `${next++}`;
          waiting.set(key, resolve);
          post({ type: 'job', key, data: job.data });
        }),
      {
        connection,
        name: config.workerName,
        concurrency: config.concurrency,
        lockDuration: config.lockMs,
        stalledInterval: config.stalledMs,
        maxStalledCount: config.maxStalled,
        autorun: false,
      },
    );
    worker.on('error', (e) => post({ type: 'error', message: e.message }));
    void worker.run();
    await worker.waitUntilReady();
    post({ type: 'ready' });
  } catch (e) {
    post({ type: 'fatal', name: (e as Error).name, message: (e as Error).message });
    port.close();
  }
}

if (parentPort && (workerData as { queueThread?: ThreadConfig } | undefined)?.queueThread) {
  void main((workerData as { queueThread: ThreadConfig }).queueThread);
}
