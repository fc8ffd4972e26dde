/**
 * causalLmLoss against transformers 5.24's ForCausalLMLoss (reference/gen_training.py, batch A of the
 * tester: left padding, -100 on pads, placeholders and prompts).
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { causalLmLoss, countLabelTokens } from '../../src/training/loss';
import { Batch, TESTER, batchLoss, loadBatch, openTraining, scalar } from './training_fixtures';

let batch: Batch;
let logits: tf.Tensor3D; // Python's logits of batch A
let expected: { mean: number; numItems: number; n: number; counted: number };

beforeAll(async () => {
  batch = await loadBatch('A');
  const f = await openTraining('batch');
  logits = (await f.readTensor('A.logits')) as tf.Tensor3D;
  expected = {
    mean: await scalar(f, 'A.loss'),
    numItems: await scalar(f, 'A.loss_num_items'),
    n: Number(f.metadata['A.num_items_in_batch']),
    counted: Number(f.metadata['A.counted_tokens']),
  };
  await f.close();
});
afterAll(() => {
  batch?.dispose();
  logits?.dispose();
});

test('mean over counted tokens, on the reference logits', () => {
  const loss = causalLmLoss(logits, batch.labels);
  // same logits: only the order of the log-sum-exp and of the mean differ (loss ≈ 5.9, ulp ≈ 5e-7)
  expect(Math.abs(loss.dataSync()[0] - expected.mean)).toBeLessThan(2e-6);
  loss.dispose();
});

test('sum / num_items_in_batch when numItemsInBatch is given', () => {
  const loss = causalLmLoss(logits, batch.labels, { numItemsInBatch: expected.n });
  expect(Math.abs(loss.dataSync()[0] - expected.numItems)).toBeLessThan(2e-6); // as above
  loss.dispose();
});

test('labels as a tensor give the same loss; countLabelTokens counts what the loss counts', () => {
  const labels = tf.tensor2d(batch.labels, undefined, 'int32');
  const a = causalLmLoss(logits, labels);
  const b = causalLmLoss(logits, batch.labels);
  expect(a.dataSync()[0]).toBe(b.dataSync()[0]);
  expect(countLabelTokens(batch.labels)).toBe(expected.counted);
  tf.dispose([labels, a, b]);
});

test('forward({labels}) returns the loss of the model (tester, batch A)', async () => {
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  const before = tf.memory().numTensors;
  const loss = batchLoss(model, batch);
  expect(Math.abs(loss.dataSync()[0] - expected.mean)).toBeLessThan(1e-5); // logits agree to ≤ 2e-5 (parity test)
  loss.dispose();
  expect(tf.memory().numTensors).toBe(before);
  const bad = batch.labels.map((r) => r.map((t) => (t === -100 ? t : 500)));
  expect(() => batchLoss(model, { ...batch, labels: bad })).toThrow(InputError);
  expect(tf.memory().numTensors).toBe(before); // the logits are freed when the labels are rejected
  model.dispose();
});

test('nothing counted: NaN like torch (0 / 0); 0 with numItemsInBatch', () => {
  const ignored = batch.labels.map((r) => r.map(() => -100));
  const mean = causalLmLoss(logits, ignored);
  const summed = causalLmLoss(logits, ignored, { numItemsInBatch: 4 });
  expect(Number.isNaN(mean.dataSync()[0])).toBe(true);
  expect(summed.dataSync()[0]).toBe(0);
  tf.dispose([mean, summed]);
});

test('bad labels are typed errors and leak nothing', () => {
  const before = tf.memory().numTensors;
  const bad = batch.labels.map((r) => [...r]);
  bad[1][bad[1].length - 1] = 99; // vocab is 99
  expect(() => causalLmLoss(logits, bad)).toThrow(InputError);
  expect(() => causalLmLoss(logits, bad)).toThrow(/label 99 at \[1, 27\] is outside the vocabulary \[0, 99\)/);
  expect(() => causalLmLoss(logits, batch.labels.slice(0, 1))).toThrow(/expected 2 rows of length 28/);
  const flat = tf.zeros([2, 3]);
  expect(() => causalLmLoss(flat, batch.labels)).toThrow(/expected \[batch, length, vocab\]/);
  flat.dispose();
  expect(() => causalLmLoss(logits, batch.labels, { numItemsInBatch: 0 })).toThrow(InputError);
  expect(tf.memory().numTensors).toBe(before);
});
