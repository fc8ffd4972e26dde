/**
 * `npm run bench:eval`: `video-llava eval` over a shapes manifest on the trained demo model, as a user runs it
 * (the compiled CLI in child processes), on this machine:
 *
 *   1. one process, batch sizes 1 / 2 / 4 / 8 (4 is the default for this model), and batch 1 without
 *      overlap (one item in flight: decode, then model, then the next); per-stage time per item;
 *   2. the same run killed (SIGKILL) half-way and rerun: lines, duplicates, answers against run 1;
 *   3. accuracy against the demo's own evaluation of the same examples (examples/train_demo/evaluate.ts);
 *   4. a queue run on a private redis-server with two `video-llava worker` processes, against one process;
 *   5. the queue's own cost per item: items that fail at once (a missing file: no model work), through the
 *      queue and locally;
 *   6. what continuous batching could save at most: decode row-steps spent on rows that had finished.
 *
 *   node .bench-build/benchmarks/eval.js [--items 200] [--repeats 3] [--out benchmarks/results]
 *
 * Needs redis-server on PATH for 4 and 5 (skipped with a line otherwise). Prints a markdown report and
 * writes it to <out>/eval.md. Nothing here asserts: these are measurements.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { setBackend } from '../src/backend';
import { writeShapesManifest } from '../src/data/manifest';
import { makeExample } from '../src/data/questions';
import { ItemResult, readResults } from '../src/eval/results';
import { loadModel } from '../src/eval/run';
import { evaluate as demoEvaluate, heldOutQuestions } from '../examples/train_demo/evaluate';
import { exampleOptions, readTrainConfig } from '../examples/train_demo/common';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(__dirname, '..', 'src', 'cli', 'main.js');
const MODEL = path.join(ROOT, 'assets', 'trained-model');
const SEED = 3; // test/demo's held-out data set

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  proc: ChildProcess;
  out: string;
  err: string;
  exited: Promise<number | null>;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const run: Run = { proc, out: '', err: '', exited: new Promise((resolve) => proc.once('exit', (code) => resolve(code))) };
  proc.stdout!.on('data', (d: Buffer) => (run.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (run.err += d.toString()));
  return run;
}

async function timed(args: string[]): Promise<{ ms: number; run: Run }> {
  const t = Date.now();
  const run = cli(args);
  const code = await run.exited;
  if (code !== 0) throw new Error(`video-llava ${args.join(' ')} exited ${code}: ${run.err.slice(-2000)}`);
  return { ms: Date.now() - t, run };
}

const lines = (file: string): ItemResult[] => [...readResults(file).results.values()];
const answers = (file: string) => new Map(lines(file).map((l) => [l.id, l.answer]));
const accuracy = (rs: ItemResult[]) => rs.filter((r) => r.exact).length / rs.length;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Per-stage mean ms per item, and the decode row-steps spent on finished rows (batches share their timings). */
function stages(rs: ItemResult[]): { vision: number; prefill: number; decode: number; preprocess: number; wasted: number; decodeShare: number } {
  const mean = (f: (r: ItemResult) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
  const batches = new Map<string, ItemResult[]>();
  for (const r of rs) {
    const t = r.timings!;
    const key = `${t.batchSize}|${t.visionMs}|${t.prefillMs}|${t.decodeMs}`;
    batches.set(key, [...(batches.get(key) ?? []), r]);
  }
  let spent = 0;
  let needed = 0;
  for (const b of batches.values()) {
    const steps = Math.max(...b.map((r) => r.tokens)) - 1; // decode forwards after the prefill's token
    spent += b[0].timings!.batchSize * steps;
    needed += b.reduce((s, r) => s + r.tokens - 1, 0);
  }
  const vision = mean((r) => r.timings!.visionMs);
  const prefill = mean((r) => r.timings!.prefillMs);
  const decode = mean((r) => r.timings!.decodeMs);
  return { vision, prefill, decode, preprocess: mean((r) => r.timings!.preprocessMs), wasted: spent > 0 ? 1 - needed / spent : 0, decodeShare: decode / (vision + prefill + decode) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(): Promise<{ url: string; stop: () => void } | undefined> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return undefined;
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => proc.stdout!.on('data', (d: Buffer) => /Ready to accept/.test(d.toString()) && resolve()));
  return { url: `redis://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
}

/**
 * Starts the workers and the producer together (as a user would); wall time from spawning them to the
 * producer's exit, and the part after the last worker became ready (models loaded, queue connected).
 */
async function queueRun(url: string, name: string, manifest: string, output: string, workers: number, extra: string[] = []): Promise<{ ms: number; afterReadyMs: number }> {
  const t0 = Date.now();
  const ws = Array.from({ length: workers }, () => cli(['worker', '--queue', url, '--queue-name', name, '--model', MODEL, '--quiet', ...extra]));
  const ready = ws.map((w) => new Promise<number>((resolve) => w.proc.stdout!.on('data', () => /ready/.test(w.out) && resolve(Date.now()))));
  await timed(['eval', '--queue', url, '--queue-name', name, '--manifest', manifest, '--output', output, '--max-new-tokens', '12', '--quiet']);
  const t2 = Date.now();
  const lastReady = Math.max(...(await Promise.all(ready)));
  for (const w of ws) w.proc.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.exited));
  return { ms: t2 - t0, afterReadyMs: t2 - lastReady };
}

async function main(): Promise<void> {
  const count = Number(arg('items', '200'));
  const outDir = arg('out', path.join(ROOT, 'benchmarks', 'results'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-bench-eval-'));
  const report: string[] = [];
  const say = (line = '') => {
    console.log(line);
    report.push(line);
  };
  const cfg = await readTrainConfig();
  const examples: ReturnType<typeof makeExample>[] = [];
  for (let n = 0, i = 0; n < count; i++) {
    examples.push(makeExample(SEED, i, exampleOptions(cfg)));
    n += heldOutQuestions(examples[i], SEED).length;
  }
  const { manifest, items } = await writeShapesManifest(dir, examples, { questions: (ex) => heldOutQuestions(ex, SEED), maxItems: count });
  const videos = examples.filter((e) => e.facts.media === 'video').length;
  say(`# video-llava eval: ${items} items (${examples.length} held-out shapes examples, seed ${SEED}: ${videos} videos, ${examples.length - videos} images), trained demo model`);
  say();
  say(`${new Date().toISOString()}, ${os.cpus()[0].model} × ${os.cpus().length}, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the start`);
  say();

  // 1. one process
  const common = ['eval', '--model', MODEL, '--manifest', manifest, '--max-new-tokens', '12', '--quiet'];
  const single: Array<{ label: string; ms: number; file: string }> = [];
  for (const [label, extra] of [
    ['batch 1', ['--batch-size', '1']],
    ['batch 2', ['--batch-size', '2']],
    ['batch 4 (default)', []],
    ['batch 8', ['--batch-size', '8']],
  ] as const) {
    const file = path.join(dir, `single-${single.length}.jsonl`);
    const { ms } = await timed([...common, '--output', file, ...extra]);
    single.push({ label, ms, file });
  }
  // Overlap on or off needs the library's `concurrency` (not a CLI flag): in this process, model loaded.
  const noOverlap = await (async () => {
    const { evaluate } = await import('../src/eval/run');
    await setBackend();
    const loaded = await loadModel(MODEL);
    const t = Date.now();
    await evaluate({ manifest, output: path.join(dir, 'no-overlap.jsonl'), model: loaded, batchSize: 1, concurrency: 1, generation: { maxNewTokens: 12 } });
    const ms = Date.now() - t;
    const t2 = Date.now();
    await evaluate({ manifest, output: path.join(dir, 'overlap-inproc.jsonl'), model: loaded, batchSize: 1, generation: { maxNewTokens: 12 } });
    const overlapMs = Date.now() - t2;
    loaded.model.dispose();
    return { ms, overlapMs };
  })();
  say('## One process');
  say();
  say('| run | wall time (CLI, model load included) | items/s | vision ms/item | prefill ms/item | decode ms/item | inputs ready after (ms) |');
  say('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of single) {
    const st = stages(lines(r.file));
    say(`| ${r.label} | ${s1(r.ms)} | ${((items / r.ms) * 1000).toFixed(1)} | ${st.vision.toFixed(1)} | ${st.prefill.toFixed(1)} | ${st.decode.toFixed(1)} | ${st.preprocess.toFixed(0)} |`);
  }
  say();
  say(`Overlap (in one process, model loaded, batch 1): one item at a time ${s1(noOverlap.ms)}, with the next items decoding during model work ${s1(noOverlap.overlapMs)} (${(noOverlap.ms / noOverlap.overlapMs).toFixed(2)}×).`);
  const base = single.find((r) => r.label.startsWith('batch 4'))!;
  const reference = answers(base.file);
  const same = single.every((r) => [...answers(r.file)].every(([id, a]) => reference.get(id) === a));
  say(`Every batch size gives the same answer on every item: ${same ? 'yes' : 'NO'}.`);
  const st4 = stages(lines(base.file));
  say();
  say(`Continuous batching (not built): at batch 4, ${pct(st4.wasted)} of decode row-steps went to rows that had already finished; decode is ${pct(st4.decodeShare)} of model time, so filling those slots with new items could save at most ${pct(st4.wasted * st4.decodeShare)} of model time (less the cost of admitting an item into a running batch).`);
  say();

  // 2. killed half-way and resumed
  const killed = path.join(dir, 'killed.jsonl');
  const t0 = Date.now();
  const first = cli([...common, '--output', killed]);
  while ((fs.existsSync(killed) ? fs.readFileSync(killed, 'utf8').split('\n').length - 1 : 0) < items / 2) await sleep(10);
  first.proc.kill('SIGKILL');
  await first.exited;
  const before = lines(killed).length;
  const resumed = await timed([...common, '--output', killed]);
  const total = Date.now() - t0;
  const got = fs.readFileSync(killed, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).id as string);
  const resumedAnswers = answers(killed);
  say('## Killed half-way, rerun');
  say();
  say(`Killed (SIGKILL) with ${before} lines written; the rerun finished the rest in ${s1(resumed.ms)} (both runs ${s1(total)}, against ${s1(base.ms)} uninterrupted). ` +
    `Lines: ${got.length} for ${items} items, ${got.length - new Set(got).size} duplicate(s), ${items - new Set(got).size} missing; ` +
    `answers equal to the uninterrupted run: ${[...reference].every(([id, a]) => resumedAnswers.get(id) === a) ? 'all' : 'NOT all'}.`);
  say();

  // 3. accuracy against the demo's evaluation of the same examples
  await setBackend();
  const loaded = await loadModel(MODEL);
  const demoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-bench-demo-'));
  const demo = await demoEvaluate(loaded.model, loaded.processor, examples, SEED, { videoDir: demoDir });
  loaded.model.dispose();
  const demoCorrect = Object.values(demo.byType).reduce((s, t) => s + t.correct, 0);
  const demoTotal = Object.values(demo.byType).reduce((s, t) => s + t.total, 0);
  say('## Accuracy');
  say();
  say(`eval: ${pct(accuracy(lines(base.file)))} exact (${lines(base.file).filter((r) => r.exact).length}/${items}); examples/train_demo/evaluate.ts on the same ${examples.length} examples (every question, files as the CLI reads them): ${pct(demoCorrect / demoTotal)} (${demoCorrect}/${demoTotal}; the manifest stops at ${items} of its ${demoTotal} questions).`);
  say();

  // 4 and 5. the queue
  const redis = await startRedis();
  if (!redis) {
    say('redis-server not found: queue measurements skipped');
  } else {
    try {
      // Alternating repeats (one process, queue with 2 workers, queue with 1 worker, again…), so that a busy
      // spell of this shared machine hits every column alike; medians.
      const repeats = Number(arg('repeats', '3'));
      const cols: Record<'local' | 'two' | 'one', number[]> = { local: [], two: [], one: [] };
      const producer: Record<'two' | 'one', number[]> = { two: [], one: [] };
      for (let r = 0; r < repeats; r++) {
        cols.local.push((await timed([...common, '--output', path.join(dir, `alt-local-${r}.jsonl`)])).ms);
        const two = await queueRun(redis.url, `bench-two-${r}`, manifest, path.join(dir, `queue-2-${r}.jsonl`), 2);
        cols.two.push(two.ms);
        producer.two.push(two.afterReadyMs);
        const one = await queueRun(redis.url, `bench-one-${r}`, manifest, path.join(dir, `queue-1-${r}.jsonl`), 1);
        cols.one.push(one.ms);
        producer.one.push(one.afterReadyMs);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
      const all = (xs: number[]) => xs.map(s1).join(', ');
      const qAnswers = answers(path.join(dir, 'queue-2-0.jsonl'));
      say('## Queue (Redis + BullMQ) on this machine');
      say();
      say(`${repeats} alternating repeats; wall time from starting the processes (workers and producer together, model loads included) to the last line; median (all).`);
      say();
      say('| run | wall time | after the workers were ready | items/s | vs one process |');
      say('|---|---:|---:|---:|---:|');
      say(`| one process, batch 4 | ${s1(median(cols.local))} (${all(cols.local)}) | | ${((items / median(cols.local)) * 1000).toFixed(1)} | 1.00× |`);
      say(`| queue, 2 workers | ${s1(median(cols.two))} (${all(cols.two)}) | ${s1(median(producer.two))} | ${((items / median(cols.two)) * 1000).toFixed(1)} | ${(median(cols.two) / median(cols.local)).toFixed(2)}× |`);
      say(`| queue, 1 worker | ${s1(median(cols.one))} (${all(cols.one)}) | ${s1(median(producer.one))} | ${((items / median(cols.one)) * 1000).toFixed(1)} | ${(median(cols.one) / median(cols.local)).toFixed(2)}× |`);
      say();
      say(`Queue answers equal the local ones: ${[...reference].every(([id, a]) => qAnswers.get(id) === a) ? 'all' : 'NOT all'}; lines ${lines(path.join(dir, 'queue-2-0.jsonl')).length}.`);
      // 5. per-item overhead: items that fail at once
      const missing = path.join(dir, 'missing.jsonl');
      fs.writeFileSync(missing, Array.from({ length: items }, (_, i) => JSON.stringify({ id: `m${i}`, video: `nowhere/${i}.mp4`, question: 'What shape is it?' })).join('\n') + '\n');
      const local = await timed(['eval', '--model', MODEL, '--manifest', missing, '--output', path.join(dir, 'missing-local.jsonl'), '--quiet']);
      const queued = await queueRun(redis.url, 'bench-missing', missing, path.join(dir, 'missing-queue.jsonl'), 1);
      const localRun = lines(path.join(dir, 'missing-local.jsonl')).length;
      say();
      say(`Queue cost per item (${items} items that fail at once on a missing file, so no model work; one worker): ${s1(queued.afterReadyMs)} from the worker being ready to the last line gathered, ` +
        `against ${s1(local.ms)} for a local run of the same (${localRun} lines, model load included): ${(queued.afterReadyMs / items).toFixed(1)} ms per item through the queue ` +
        `(add, take, hand to the model thread, store, gather, fsync, remove), an upper bound: it includes the producer's start and its 250 ms polling.`);
    } finally {
      redis.stop();
    }
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, 'eval.md'), report.join('\n') + '\n');
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
