/**
 * The queue run in this process: a producer (evaluateOnQueue) and a worker (runWorker) on a private
 * redis-server (test/helpers/redis.ts), the trained demo model. Two real worker processes, one killed
 * mid-item, are in processes.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Job, Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { QueueError } from '../../src/errors';
import { MAX_ITEMS_PER_JOB, evaluateOnQueue, jobIdFor, mediaGroups, runKeyFor, runWorker } from '../../src/eval/queue';
import { readResults } from '../../src/eval/results';
import { evaluate, LoadedModel, loadModel } from '../../src/eval/run';
import { demoExamples, demoManifest } from '../helpers/eval';
import { RedisServer, describeWithRedis, startRedis } from '../helpers/redis';

const MODEL = path.join(__dirname, '..', '..', 'assets', 'trained-model');
const GENERATION = { maxNewTokens: 12 };
const lines = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
const answers = (file: string) => new Map(lines(file).map((l) => [l.id, l.answer]));

describe('mediaGroups', () => {
  test('consecutive items about the same media, at most MAX_ITEMS_PER_JOB a group', () => {
    const item = (id: string, videos: string[], images: string[] = []) => ({ id, line: 0, images, videos, question: 'q' });
    const items = [item('a', ['v1']), item('b', ['v1']), item('c', ['v2']), item('d', ['v1']), item('e', ['v1'], ['i']), ...Array.from({ length: 10 }, (_, i) => item(`x${i}`, ['v3']))];
    expect(mediaGroups(items).map((g) => g.map((i) => i.id).join(','))).toEqual([
      'a,b', 'c', 'd', 'e', ['x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7'].join(','), 'x8,x9',
    ]);
    expect(MAX_ITEMS_PER_JOB).toBe(8);
  });
});

describeWithRedis(__filename)('evaluation on a Redis queue (BullMQ)', () => {
  let redis: RedisServer;
  let loaded: LoadedModel;
  let dir: string;
  let manifest: string;
  let items: number;
  let local: string;
  let queueCount = 0;
  const queueName = () => `test-${process.pid}-${++queueCount}`; // a fresh queue per test

  beforeAll(async () => {
    redis = await startRedis();
    loaded = await loadModel(MODEL);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-queue-'));
    ({ manifest, items } = await demoManifest(dir, await demoExamples(3)));
    local = path.join(dir, 'local.jsonl');
    await evaluate({ manifest, output: local, model: loaded, generation: GENERATION });
  });

  afterAll(async () => {
    await redis?.stop();
    loaded?.model.dispose();
  });

  /** A worker in this process until `stop()`. */
  function startWorker(name: string, extra: Partial<Parameters<typeof runWorker>[0]> = {}) {
    const controller = new AbortController();
    const done = runWorker({ queue: { url: redis.url, name }, model: loaded, signal: controller.signal, lockMs: 2000, stalledMs: 500, ...extra });
    return { stop: async () => (controller.abort(), done), done };
  }

  test('a worker answers every item; the producer writes each exactly once, the same answers as a local run', async () => {
    const name = queueName();
    const worker = startWorker(name);
    const output = path.join(dir, 'queued.jsonl');
    const result = await evaluateOnQueue({ manifest, output, queue: { url: redis.url, name }, generation: GENERATION, pollMs: 50 });
    const { processed } = await worker.stop();
    expect(processed).toBe(items);
    expect([result.ranNow, result.resumed, result.aborted]).toEqual([items, 0, false]);
    const got = lines(output);
    expect(got).toHaveLength(items);
    expect(answers(output)).toEqual(answers(local));
    expect(got.every((l) => l.worker === `${os.hostname()}:${process.pid}` && l.attempts === 1)).toBe(true);
    // nothing of this run is left in Redis
    const queue = new Queue(name, { connection: { url: redis.url } });
    expect(await queue.getJobCountByTypes('completed', 'failed', 'wait', 'active', 'delayed')).toBe(0);
    await queue.close();
  });

  test('results an earlier producer left in Redis are gathered once, lines it had written are not repeated', async () => {
    const name = queueName();
    const output = path.join(dir, 'crashed.jsonl');
    const runKey = runKeyFor(output);
    const all = lines(manifest);
    const worker = startWorker(name);
    // an earlier producer queued two items and died: one after writing its line, one before
    const queue = new Queue(name, { connection: { url: redis.url } });
    const parse = (l: { id: string; video?: string; image?: string; question: string; answer: string; type: string }, i: number) => ({
      id: l.id, line: i + 1, images: l.image ? [path.join(dir, l.image)] : [], videos: l.video ? [path.join(dir, l.video)] : [], question: l.question, answer: l.answer, type: l.type,
    });
    const jobs = [0, 1].map((i) => ({ name: 'items', data: { runKey, items: [parse(all[i], i)], generation: { maxNewTokens: 12, numFrames: 8 } }, opts: { jobId: jobIdFor(runKey, [all[i].id]) } }));
    const events = new QueueEvents(name, { connection: { url: redis.url } });
    await events.waitUntilReady();
    await queue.addBulk(jobs);
    for (const j of jobs) await (await Job.fromId(queue, j.opts.jobId))!.waitUntilFinished(events);
    await events.close();
    const first = lines(local).find((l) => l.id === all[0].id);
    fs.writeFileSync(output, `${JSON.stringify(first)}\n`);

    const result = await evaluateOnQueue({ manifest, output, queue: { url: redis.url, name }, generation: GENERATION, pollMs: 50 });
    const { processed } = await worker.stop();
    expect(processed).toBe(items); // the two early jobs ran once each, the producer's jobs the rest: nothing twice
    expect([result.resumed, result.ranNow]).toEqual([1, items - 1]);
    const got = lines(output);
    expect(got.map((l) => l.id).sort()).toEqual(all.map((l) => l.id).sort());
    expect(answers(output)).toEqual(answers(local));
    expect(await queue.getJobCountByTypes('completed', 'failed', 'wait', 'active', 'delayed')).toBe(0);
    await queue.close();
  });

  test('a job whose worker is lost more times than allowed fails, and its line keeps the error', async () => {
    const name = queueName();
    const output = path.join(dir, 'stalled.jsonl');
    const one = path.join(dir, 'one.jsonl');
    fs.writeFileSync(one, `${fs.readFileSync(manifest, 'utf8').split('\n')[0]}\n`);
    const [item] = lines(one);
    const rewritten = { ...item, [item.video ? 'video' : 'image']: path.join(dir, item.video ?? item.image) };
    fs.writeFileSync(one, `${JSON.stringify(rewritten)}\n`);
    // a "worker" that takes the job and dies: it never renews the lock nor finishes
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const dead = new Worker(name, null, { connection, lockDuration: 500, autorun: false });
    const producing = evaluateOnQueue({ manifest: one, output, queue: { url: redis.url, name }, generation: GENERATION, pollMs: 50 });
    let job: Job | undefined;
    while (!job) {
      job = await dead.getNextJob('dead-worker-token');
      if (!job) await new Promise((r) => setTimeout(r, 50));
    }
    // a live worker that allows no recovery from a lost worker: the stalled job fails
    const worker = startWorker(name, { maxStalled: 0, lockMs: 500, stalledMs: 200 });
    const result = await producing;
    const { processed } = await worker.stop();
    await dead.close(true);
    connection.disconnect();
    expect(processed).toBe(0);
    expect(result.summary.total).toMatchObject({ items: 1, errors: 1 });
    const [line] = lines(output);
    expect(line).toMatchObject({ id: item.id, answer: null, error: { type: 'StalledJobError', message: expect.stringMatching(/stalled more than allowable limit/) } });
  });

  test('Redis unreachable: a QueueError naming it before anything is written, for the producer and the worker', async () => {
    const output = path.join(dir, 'unreachable.jsonl');
    const url = 'redis://user:secret@127.0.0.1:1';
    const err = await evaluateOnQueue({ manifest, output, queue: { url } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueError);
    expect((err as Error).message).toMatch(/^redis:\/\/user:\*\*\*@127\.0\.0\.1:1: Redis is unreachable \(.*ECONNREFUSED.*\); start redis-server there or fix --queue$/);
    expect(fs.existsSync(output)).toBe(false);
    await expect(runWorker({ queue: { url }, model: loaded })).rejects.toThrow(QueueError);
    await expect(evaluateOnQueue({ manifest, output, queue: { url: 'http://127.0.0.1:1' } })).rejects.toThrow(/--queue: expected a redis:\/\/ or rediss:\/\/ URL/);
  });

  test('Redis lost mid-run: the producer stops with a QueueError keeping every line; after a restart a rerun completes exactly once', async () => {
    const name = queueName();
    const output = path.join(dir, 'lost.jsonl');
    const worker = startWorker(name, { batchSize: 1 });
    let stopped = false;
    const err = await evaluateOnQueue({
      manifest,
      output,
      queue: { url: redis.url, name },
      generation: GENERATION,
      pollMs: 50,
      redisTimeoutMs: 1500,
      onProgress: (p) => {
        if (p.ranNow >= 3 && !stopped) {
          stopped = true;
          void redis.stop();
        }
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueError);
    expect((err as Error).message).toMatch(/Redis failed every request for 1500 ms .* finished items are in .*lost\.jsonl: rerun to resume/);
    const kept = readResults(output);
    expect(kept.droppedBytes).toBe(0);
    expect(kept.results.size).toBeGreaterThanOrEqual(3);
    await redis.start(); // empty: the queue and whatever was on it are gone
    const result = await evaluateOnQueue({ manifest, output, queue: { url: redis.url, name }, generation: GENERATION, pollMs: 50 });
    await worker.stop(); // the same worker, reconnected
    expect(result.resumed).toBe(kept.results.size);
    expect(lines(output)).toHaveLength(items);
    expect(answers(output)).toEqual(answers(local));
  });
});
