/**
 * AdamW, clip_grad_norm_ and gradient accumulation against a PyTorch loop (reference/gen_training.py):
 * projector of the tester, AdamW(lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1), 3 steps, each
 * accumulating (loss / 2).backward() over batches A and B, then clip_grad_norm_(0.5), then step().
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { NamedGrads, disposeGrads, trainableParameters } from '../../src/training/grad';
import { AdamW, GradientAccumulator, clipGradNorm, trainStep } from '../../src/training/optimizer';
import { freeze, unfreeze } from '../../src/training/params';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { Batch, TESTER, batchLoss, compare, loadBatch, openTraining, readAll, worst } from './training_fixtures';

const ADAMW = { lr: 1e-2, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.1 };
const MAX_NORM = 0.5;
const STEPS = 3;

let a: Batch;
let b: Batch;
let fixture: SafetensorsFile;
let model: VideoLlavaForConditionalGeneration;

beforeAll(async () => {
  [a, b] = [await loadBatch('A'), await loadBatch('B')];
  fixture = await openTraining('adamw');
  expect(Number(fixture.metadata.max_grad_norm)).toBe(MAX_NORM);
});
afterAll(async () => {
  a?.dispose();
  b?.dispose();
  await fixture?.close();
});
beforeEach(async () => {
  model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  freeze(model);
  unfreeze(model, 'model.multi_modal_projector');
});
afterEach(() => model.dispose());

async function expectWeightsAfter(step: number, tol: number): Promise<number> {
  const expected = await readAll(fixture, `step${step}.weight.`);
  const actual = [...expected.keys()].map((name) => model.getParameter(name).checkpointValue());
  const diffs = [...expected].map(([name, e], i) => compare(name, actual[i], e));
  tf.dispose([...expected.values(), ...actual]);
  expect(diffs).toHaveLength(4);
  const w = worst(diffs);
  expect(w.abs).toBeLessThan(tol);
  return w.abs;
}

test("isolated: torch's accumulated grads → clipGradNorm + AdamW give torch's weights after every step", async () => {
  const opt = new AdamW(trainableParameters(model), ADAMW);
  const seen: string[] = [];
  for (let step = 1; step <= STEPS; step++) {
    const grads: NamedGrads = await readAll(fixture, `step${step}.grad.`);
    const norm = clipGradNorm(grads, MAX_NORM);
    const torchNorm = (await fixture.readFloat32(`step${step}.total_norm`))[0];
    expect(Math.abs(norm - torchNorm)).toBeLessThan(1e-6 * torchNorm); // same grads: summation order only
    opt.step(grads);
    disposeGrads(grads);
    // identical inputs each step: float32 rounding of the update only (weights O(0.5), updates O(1e-2))
    seen.push((await expectWeightsAfter(step, 1e-6)).toExponential(2));
  }
  expect(opt.stepsOf('model.multi_modal_projector.linear_1.weight')).toBe(STEPS);
  console.log(`AdamW (torch grads in): max weight diff per step ${seen.join(', ')}`);
  opt.dispose();
});

test('end to end: our forward/backward, accumulation over A and B, clipping and AdamW', async () => {
  const opt = new AdamW(trainableParameters(model), ADAMW);
  const seen: string[] = [];
  let tensorsAfterFirst = 0;
  for (let step = 1; step <= STEPS; step++) {
    const r = trainStep(opt, [a, b], (batch) => batchLoss(model, batch), { maxGradNorm: MAX_NORM });
    if (step === 1) tensorsAfterFirst = tf.memory().numTensors; // the moment estimates now exist
    else expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    const torchNorm = (await fixture.readFloat32(`step${step}.total_norm`))[0];
    expect(Math.abs(r.gradNorm! - torchNorm)).toBeLessThan(1e-5 * torchNorm); // grads agree to ~1e-6 relative
    // gradients differ by ≤ 1e-6 (grad.test.ts); Adam's m/√v turns that into ≤ lr · 1e-4 per step
    seen.push((await expectWeightsAfter(step, 1e-5)).toExponential(2));
  }
  console.log(`AdamW (our grads): max weight diff per step ${seen.join(', ')}`);
  opt.dispose();
});

test('the accumulator sums micro-batch gradients as repeated backward() does', () => {
  const acc = new GradientAccumulator();
  acc.add(new Map([['w', tf.tensor1d([1, 2])]]));
  acc.add(new Map([['w', tf.tensor1d([0.5, -1])], ['v', tf.tensor1d([3])]]));
  expect(acc.microBatches).toBe(2);
  const sums = acc.take();
  expect(Array.from(sums.get('w')!.dataSync())).toEqual([1.5, 1]);
  expect(Array.from(sums.get('v')!.dataSync())).toEqual([3]);
  disposeGrads(sums);
  acc.dispose();
});

test('no tensor leaks over 50 training steps', () => {
  const opt = new AdamW(trainableParameters(model), ADAMW);
  trainStep(opt, [b], (batch) => batchLoss(model, batch), { maxGradNorm: 1 }); // creates the moment estimates
  const before = tf.memory().numTensors;
  const losses: number[] = [];
  // batch B alone keeps this fast on the cpu backend; accumulation is leak-checked in the end-to-end test
  for (let i = 0; i < 50; i++) losses.push(trainStep(opt, [b], (batch) => batchLoss(model, batch), { maxGradNorm: 1 }).loss);
  expect(tf.memory().numTensors).toBe(before);
  expect(losses[49]).toBeLessThan(losses[0]); // and it learns
  opt.dispose();
});

test('bad arguments are typed errors', () => {
  expect(() => new AdamW([], { lr: -1 })).toThrow(InputError);
  expect(() => new AdamW([], { betas: [1, 0.999] })).toThrow(/betas\[0\]/);
  expect(() => clipGradNorm(new Map(), 0)).toThrow(InputError);
  const opt = new AdamW(trainableParameters(model), ADAMW);
  const wrong = new Map([['model.multi_modal_projector.linear_1.bias', tf.zeros([3])]]);
  expect(() => opt.step(wrong)).toThrow(/gradient shape \[3\] differs from the parameter's \[32\]/);
  disposeGrads(wrong);
  expect(() => trainStep(opt, [], () => tf.scalar(0))).toThrow(InputError);
  opt.dispose();
});
