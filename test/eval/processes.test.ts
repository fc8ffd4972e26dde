/**
 * Evaluation with real processes killed (SIGKILL) part-way, on the trained demo model:
 *   - a queue run over two `video-llava worker` processes, one killed while it holds items: every item ends
 *     with exactly one line, the killed worker's items answered by the other, accuracy equal to a local run;
 *   - `video-llava eval` killed at random points and rerun: one line per item, the same answers.
 * Children run the TypeScript CLI through test/helpers/ts_register.js. .ci/run runs this file in its first
 * suite pass only (see the comment there).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Job, Queue } from 'bullmq';
import { evaluateOnQueue } from '../../src/eval/queue';
import { evaluate, loadModel } from '../../src/eval/run';
import { demoExamples, demoManifest } from '../helpers/eval';
import { RedisServer, describeWithRedis, startRedis } from '../helpers/redis';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'assets', 'trained-model');
const CLI = ['-r', path.join(ROOT, 'test', 'helpers', 'ts_register.js'), path.join(ROOT, 'src', 'cli', 'main.ts')];

const lines = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  proc: ChildProcess;
  stdout: string[];
  stderr: string;
  exited: Promise<number | null>;
}

function cli(args: string[]): Child {
  const proc = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const child: Child = { proc, stdout: [], stderr: '', exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))) };
  let partial = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const text = partial + d.toString();
    const parts = text.split('\n');
    partial = parts.pop()!;
    child.stdout.push(...parts);
  });
  proc.stderr!.on('data', (d: Buffer) => (child.stderr += d.toString()));
  return child;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

let dir: string;
let manifest: string;
let items: number;
let local: Map<string, string>;
let localAccuracy: number;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-processes-'));
  ({ manifest, items } = await demoManifest(dir, await demoExamples(4)));
  const loaded = await loadModel(MODEL);
  try {
    const output = path.join(dir, 'local.jsonl');
    const r = await evaluate({ manifest, output, model: loaded, generation: { maxNewTokens: 12 } });
    local = new Map(lines(output).map((l) => [l.id, l.answer]));
    localAccuracy = r.summary.total.exact / r.summary.total.items;
  } finally {
    loaded.model.dispose();
  }
});

describeWithRedis(__filename)('a queue run over two worker processes', () => {
  let redis: RedisServer;
  const workers: Child[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await redis?.stop();
  });

  test('one killed while it holds items: each item gets exactly one line, accuracy equals the local run', async () => {
    const name = 'two-workers';
    const flags = ['--queue', redis.url, '--queue-name', name, '--model', MODEL, '--lock-ms', '2000', '--stalled-ms', '500', '--max-stalled', '2'];
    const [a, b] = [cli(['worker', ...flags]), cli(['worker', ...flags])];
    workers.push(a, b);
    await until('both workers ready', () => [a, b].every((w) => w.stdout.some((l) => l.includes('ready'))));
    const nameOf = (w: Child) => /worker (\S+): ready/.exec(w.stdout.find((l) => l.includes('ready'))!)![1];

    const output = path.join(dir, 'queued.jsonl');
    const producing = evaluateOnQueue({ manifest, output, queue: { url: redis.url, name }, generation: { maxNewTokens: 12 }, pollMs: 50 });
    // Freeze A as soon as it has started an item; if Redis then shows jobs active under A (it is mid-item,
    // and frozen it cannot finish them) kill it, else let it go on and try again at its next item.
    const queue = new Queue(name, { connection: { url: redis.url } });
    let lost: Job[] = [];
    for (let tries = 0; lost.length === 0; tries++) {
      const started = a.stdout.filter((l) => l.startsWith('start ')).length;
      await until('worker A starting an item', () => a.stdout.filter((l) => l.startsWith('start ')).length > started);
      a.proc.kill('SIGSTOP');
      lost = (await queue.getJobs(['active'])).filter((j) => j.processedBy === nameOf(a));
      if (lost.length > 0) a.proc.kill('SIGKILL');
      else a.proc.kill('SIGCONT');
      expect(tries).toBeLessThan(items);
    }
    expect(await a.exited).toBeNull(); // killed

    const result = await producing;
    await queue.close();
    const got = lines(output);
    expect(got.map((l) => l.id).sort()).toEqual([...local.keys()].sort()); // every item, once
    expect(new Map(got.map((l) => [l.id, l.answer]))).toEqual(local);
    expect(result.summary.total.exact / result.summary.total.items).toBe(localAccuracy);
    // the items A held when it died were answered by B, on a second start
    const byId = new Map(got.map((l) => [l.id, l]));
    for (const job of lost) {
      for (const item of job.data.items) expect(byId.get(item.id)).toMatchObject({ worker: nameOf(b), attempts: 2 });
    }
    b.proc.kill('SIGTERM'); // graceful: it finishes what it holds (nothing) and exits 0
    expect(await b.exited).toBe(0);
    expect(b.stdout.some((l) => /worker: stopped after \d+ item/.test(l))).toBe(true);
  });
});

describe('video-llava eval killed at random points', () => {
  test('each rerun resumes; in the end every item has exactly one line with the uninterrupted answers', async () => {
    const output = path.join(dir, 'killed.jsonl');
    const args = ['eval', '--model', MODEL, '--manifest', manifest, '--output', output, '--max-new-tokens', '12', '--quiet'];
    const count = () => (fs.existsSync(output) ? fs.readFileSync(output, 'utf8').split('\n').length - 1 : 0);
    const kills: string[] = [];
    for (let k = 0; k < 3; k++) {
      const before = count();
      const target = before + 1 + Math.floor(Math.random() * Math.max(1, Math.floor((items - before) / 3)));
      const delay = Math.floor(Math.random() * 100);
      const run = cli(args);
      await until(`${target} lines`, () => count() >= target || run.proc.exitCode !== null);
      await sleep(delay);
      run.proc.kill('SIGKILL');
      await run.exited;
      kills.push(`after ${count()} lines (+${delay} ms)`);
      if (k > 0 && before > 0) expect(run.stderr).toMatch(/resuming: \d+ item\(s\) already done/);
    }
    console.log(`killed: ${kills.join(', ')}`);
    expect(count()).toBeLessThan(items); // the kills did land before the end
    const last = cli(args);
    expect(await last.exited).toBe(0);
    const got = lines(output);
    expect(got).toHaveLength(items);
    expect(new Map(got.map((l) => [l.id, l.answer]))).toEqual(local);
  });
});
