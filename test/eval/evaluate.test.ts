/**
 * evaluate() and `video-llava eval` on the shipped trained demo model, in this process: accuracy equal to the
 * demo's own evaluation of the same examples, batching that does not change answers, bad items recorded as
 * their errors, resuming. Killing real processes is in processes.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../../src/cli/main';
import { readResults } from '../../src/eval/results';
import { evaluate, LoadedModel, loadModel } from '../../src/eval/run';
import { evaluate as demoEvaluate } from '../../examples/train_demo/evaluate';
import { capture } from '../helpers/cli';
import { DEMO_TEST_SEED, demoExamples, demoManifest } from '../helpers/eval';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'assets', 'trained-model');
const VIDEOS = path.join(ROOT, 'test', 'fixtures', 'videos');
const GENERATION = { maxNewTokens: 12 }; // the demo evaluation's budget: every answer ends well before

let loaded: LoadedModel;
let dir: string;
let manifest: string;
let items: number;
let demo: Awaited<ReturnType<typeof demoEvaluate>>;

beforeAll(async () => {
  loaded = await loadModel(MODEL);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-eval-'));
  const examples = await demoExamples(6);
  ({ manifest, items } = await demoManifest(dir, examples));
  // the demo's own evaluation of the same examples, reading the same kind of files (H.264 written by writeVideo)
  const videoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-eval-demo-'));
  demo = await demoEvaluate(loaded.model, loaded.processor, examples, DEMO_TEST_SEED, { videoDir });
});

afterAll(() => loaded?.model.dispose());

const lines = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));

describe('evaluate() on the trained demo model', () => {
  test('answers every item once; accuracy and failures equal the demo evaluation of the same examples', async () => {
    const before = tf.memory().numTensors;
    const output = path.join(dir, 'b4.jsonl');
    const result = await evaluate({ manifest, output, model: loaded, generation: GENERATION, batchSize: 4 });
    expect(tf.memory().numTensors).toBe(before);
    const got = lines(output);
    expect(got).toHaveLength(items);
    expect(new Set(got.map((l) => l.id)).size).toBe(items);
    expect(got.every((l) => l.error === undefined && l.finishReason === 'eos')).toBe(true);
    // per type: the same correct / asked as examples/train_demo/evaluate.ts
    const byType = Object.fromEntries(result.summary.byType.map(([t, tally]) => [t, { correct: tally.exact, total: tally.items }]));
    const demoByType = Object.fromEntries(Object.entries(demo.byType).filter(([, t]) => t.total > 0));
    expect(byType).toEqual(demoByType);
    // and the same items wrong
    const wrong = got.filter((l) => !l.exact).map((l) => l.id).sort();
    expect(wrong).toEqual(demo.failures.map((f) => `${DEMO_TEST_SEED}-${f.index}-${f.type}`).sort());
  });

  test('batching (vision and decode of several items at once) gives the same answers as one at a time', async () => {
    await evaluate({ manifest, output: path.join(dir, 'b1.jsonl'), model: loaded, generation: GENERATION, batchSize: 1 });
    const one = new Map(lines(path.join(dir, 'b1.jsonl')).map((l) => [l.id, l.answer]));
    const four = new Map(lines(path.join(dir, 'b4.jsonl')).map((l) => [l.id, l.answer]));
    expect(one).toEqual(four);
    expect(lines(path.join(dir, 'b1.jsonl')).every((l) => l.timings.batchSize === 1)).toBe(true);
    expect(lines(path.join(dir, 'b4.jsonl')).some((l) => l.timings.batchSize > 1)).toBe(true);
  });

  test('bad items are recorded with their typed error and the run goes on', async () => {
    const bad = path.join(dir, 'bad');
    fs.mkdirSync(bad);
    const good = lines(manifest.replace(/manifest\.jsonl$/, 'manifest.jsonl')).slice(0, 2);
    const media = (l: { video?: string; image?: string }) => path.join(dir, (l.video ?? l.image)!);
    const manifestLines = [
      { id: 'missing', video: 'nope.mp4', question: 'What shape is it?' },
      { id: 'truncated', video: path.join(VIDEOS, 'truncated.mp4'), question: 'What shape is it?' },
      { id: 'text', video: path.join(VIDEOS, 'not_a_video.txt'), question: 'What shape is it?' },
      { id: 'too-long', video: media(good[0]), question: `${'What '.repeat(600)}shape is it?` },
      { id: 'placeholders', video: media(good[0]), question: '<video>\n<video>\nWhat shape is it? ASSISTANT:' },
      { ...good[0], [good[0].video ? 'video' : 'image']: media(good[0]) },
      { ...good[1], [good[1].video ? 'video' : 'image']: media(good[1]) },
    ];
    fs.writeFileSync(path.join(bad, 'manifest.jsonl'), manifestLines.map((l) => JSON.stringify(l)).join('\n'));
    const before = tf.memory().numTensors;
    const output = path.join(bad, 'out.jsonl');
    const result = await evaluate({ manifest: path.join(bad, 'manifest.jsonl'), output, model: loaded, generation: GENERATION });
    expect(tf.memory().numTensors).toBe(before);
    const got = new Map(lines(output).map((l) => [l.id, l]));
    expect(got.size).toBe(7);
    const error = (id: string) => got.get(id).error;
    expect(error('missing')).toEqual({ type: 'MediaError', message: `${path.join(bad, 'nope.mp4')}: file not found` });
    expect(error('truncated')).toEqual({ type: 'MediaError', message: expect.stringMatching(/truncated\.mp4: not a video ffmpeg can read/) });
    expect(error('text')).toEqual({ type: 'MediaError', message: expect.stringMatching(/not_a_video\.txt: a text file/) });
    expect(error('too-long')).toEqual({ type: 'InputError', message: expect.stringMatching(/^prompt: \d+ tokens \(media placeholders expanded\) exceed the model's context of 512 positions/) });
    expect(error('placeholders')).toEqual({ type: 'InputError', message: 'videos: the prompts contain 2 <video> placeholder(s) but 1 videos were given; they must match one to one' });
    for (const id of ['missing', 'truncated', 'text', 'too-long', 'placeholders']) expect([id, got.get(id).answer, got.get(id).tokens]).toEqual([id, null, 0]);
    for (const l of good) expect(got.get(l.id)).toMatchObject({ answer: l.answer, exact: true });
    expect(result.summary.total).toMatchObject({ items: 7, errors: 5 });
    expect(result.summary.errorKinds).toEqual([['MediaError', 3], ['InputError', 2]]);
    // --retry-errors runs exactly the failed ones again (still failing: same lines, no duplicates)
    const again = await evaluate({ manifest: path.join(bad, 'manifest.jsonl'), output, model: loaded, generation: GENERATION, retryErrors: true });
    expect([again.ranNow, again.resumed]).toEqual([5, 2]);
    expect(readResults(output).results.size).toBe(7);
    expect(lines(output)).toHaveLength(7);
  });

  test('stopped part-way (abort), a rerun continues: no duplicate, nothing lost, the same answers', async () => {
    const output = path.join(dir, 'resumed.jsonl');
    const controller = new AbortController();
    const first = await evaluate({
      manifest,
      output,
      model: loaded,
      generation: GENERATION,
      batchSize: 2,
      signal: controller.signal,
      onProgress: (p) => p.ranNow >= 7 && controller.abort(),
    });
    expect(first.aborted).toBe(true);
    const partial = lines(output).length;
    expect(partial).toBeGreaterThanOrEqual(7);
    expect(partial).toBeLessThan(items);
    const second = await evaluate({ manifest, output, model: loaded, generation: GENERATION, batchSize: 2 });
    expect([second.resumed, second.ranNow, second.aborted]).toEqual([partial, items - partial, false]);
    const all = lines(output);
    expect(all).toHaveLength(items);
    expect(new Set(all.map((l) => l.id)).size).toBe(items);
    const reference = new Map(lines(path.join(dir, 'b1.jsonl')).map((l) => [l.id, l.answer]));
    expect(new Map(all.map((l) => [l.id, l.answer]))).toEqual(reference);
  });
});

describe('video-llava eval', () => {
  test('runs a manifest and prints the table; --summary prints it again from the file', async () => {
    const small = path.join(dir, 'small');
    const { manifest, items } = await demoManifest(small, await demoExamples(2));
    const output = path.join(small, 'cli.jsonl');
    let io = capture();
    const code = await main(['eval', '--model', MODEL, '--manifest', manifest, '--output', output, '--max-new-tokens', '12', '--quiet']);
    io.restore();
    expect(code).toBe(0);
    const table = io.out.join('');
    expect(table).toMatch(/\| \*\*all\*\* \| \d+ \| 0 \|/);
    expect(io.err.join('')).toMatch(new RegExp(`${items} item\\(s\\) with a result \\(${items} now, 0 before\\), 0 error\\(s\\)`));
    io = capture();
    expect(await main(['eval', '--summary', output])).toBe(0);
    io.restore();
    expect(io.out.join('').split('\n').slice(0, -2)).toEqual(table.split('\n').slice(0, -2)); // the timing line may differ
    // run again: nothing left to do
    io = capture();
    expect(await main(['eval', '--model', MODEL, '--manifest', manifest, '--output', output, '--quiet'])).toBe(0);
    io.restore();
    expect(io.err.join('')).toMatch(new RegExp(`resuming: ${items} item\\(s\\) already done, 0 to go`));
  });

  test('user mistakes print one line and exit 1', async () => {
    const io = capture();
    const codes = [
      await main(['eval', '--model', MODEL, '--output', path.join(dir, 'x.jsonl')]),
      await main(['eval', '--model', MODEL, '--manifest', path.join(dir, 'none.jsonl'), '--output', path.join(dir, 'x.jsonl')]),
      await main(['eval', '--queue', 'redis://127.0.0.1:1', '--model', MODEL, '--manifest', manifest, '--output', path.join(dir, 'x.jsonl')]),
      await main(['eval', '--summary', path.join(dir, 'none.jsonl')]),
      await main(['eval', '--model', MODEL, '--manifest', manifest, '--output', path.join(dir, 'x.jsonl'), '--batch-size', '0']),
    ];
    io.restore();
    expect(codes).toEqual([1, 1, 1, 1, 1]);
    const errors = io.err.filter((l) => l.startsWith('video-llava eval:'));
    expect(errors).toHaveLength(5);
    expect(errors[0]).toMatch(/--manifest: is required/);
    expect(errors[1]).toMatch(/none\.jsonl: manifest not found/);
    expect(errors[2]).toMatch(/--model: a queue run uses the model of each worker/);
    expect(errors[3]).toMatch(/none\.jsonl: results file not found/);
    expect(errors[4]).toMatch(/--batch-size: expected an integer ≥ 1/);
  });
});
