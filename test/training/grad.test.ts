/**
 * Gradients against PyTorch loss.backward() (reference/gen_training.py) on batch A of the tester model
 * (an image row and a 2-frame video row, left padded, labels -100 on pads, placeholders and prompts):
 *   (a) projector only, (b) LoRA on the decoder's q_proj/v_proj, (c) every parameter.
 *
 * Tolerances (float32 throughout): the two sides differ only in summation order (tfjs kernels vs
 * torch's CPU BLAS); gradients are O(0.01–1) here, so a stated absolute bound per case with a relative
 * check against each tensor's own scale.
 */
import * as tf from '@tensorflow/tfjs';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { InputError } from '../../src/errors';
import { NamedGrads, disposeGrads, valueAndGrads } from '../../src/training/grad';
import { loadLoraAdapter } from '../../src/training/save';
import { freeze, unfreeze } from '../../src/training/params';
import * as path from 'path';
import { Batch, GradDiff, PEFT_ADAPTER, TESTER, TRAINING, batchLoss, compare, loadBatch, openTraining, readAll, scalar, worst } from './training_fixtures';

let batch: Batch;
beforeAll(async () => {
  batch = await loadBatch('A');
});
afterAll(() => batch?.dispose());

async function checkAgainst(fixture: string, grads: NamedGrads, loss: tf.Scalar): Promise<{ diffs: GradDiff[]; lossDiff: number; noGrad: string[] }> {
  const f = await openTraining(fixture);
  try {
    const expected = await readAll(f, 'grad.');
    const noGrad = f.metadata.no_grad ? (JSON.parse(f.metadata.no_grad) as string[]) : [];
    const diffs: GradDiff[] = [];
    for (const [name, e] of expected) {
      const g = grads.get(name);
      if (!g) throw new Error(`${fixture}: no gradient for ${name}`);
      diffs.push(compare(name, g, e));
    }
    tf.dispose([...expected.values()]);
    const extra = [...grads.keys()].filter((k) => !expected.has(k) && !noGrad.includes(k));
    expect(extra).toEqual([]);
    const lossDiff = Math.abs(loss.dataSync()[0] - (await scalar(f, 'loss')));
    return { diffs, lossDiff, noGrad };
  } finally {
    await f.close();
  }
}

describe('gradients match torch loss.backward()', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeEach(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  });
  afterEach(() => model.dispose());

  test('(a) projector only (LLaVA stage 1)', async () => {
    freeze(model);
    unfreeze(model, 'model.multi_modal_projector');
    const { loss, grads } = valueAndGrads(model, () => batchLoss(model, batch));
    const { diffs, lossDiff } = await checkAgainst('grads_projector', grads, loss);
    tf.dispose(loss);
    disposeGrads(grads);
    const w = worst(diffs);
    console.log(`(a) projector: ${diffs.length} grads, max abs diff ${w.abs.toExponential(2)} (${w.name}, scale ${w.scale.toFixed(3)}), loss diff ${lossDiff.toExponential(2)}`);
    expect(diffs).toHaveLength(4);
    expect(lossDiff).toBeLessThan(1e-5); // loss ≈ 5.9: a few float32 ulps
    for (const d of diffs) expect(d.abs).toBeLessThan(1e-5); // gradients O(0.1), seen ≤ 1e-6
  });

  test('(b) LoRA r=4, alpha=8 on the decoder q_proj/v_proj (A and B random, loaded from the PEFT adapter)', async () => {
    await loadLoraAdapter(model, PEFT_ADAPTER, { trainable: true });
    const { loss, grads } = valueAndGrads(model, () => batchLoss(model, batch));
    const { diffs, lossDiff } = await checkAgainst('grads_lora', grads, loss);
    tf.dispose(loss);
    disposeGrads(grads);
    const w = worst(diffs);
    console.log(`(b) LoRA: ${diffs.length} grads, max abs diff ${w.abs.toExponential(2)} (${w.name}, scale ${w.scale.toFixed(3)}), loss diff ${lossDiff.toExponential(2)}`);
    expect(diffs.map((d) => d.name).sort()).toEqual(diffs.map((d) => d.name).filter((n) => /lora_[AB]\.weight$/.test(n)).sort());
    expect(diffs).toHaveLength(8);
    expect(lossDiff).toBeLessThan(1e-5); // loss ≈ 6: a few float32 ulps
    for (const d of diffs) expect(d.abs).toBeLessThan(1e-5); // gradients O(0.1–1)
  });

  test('(d) the same LoRA on a bfloat16 base kept as stored (frozen 16-bit Linears pass dy·W on the native kernels)', async () => {
    const base = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(TRAINING, 'tester_bf16'));
    try {
      const stored = base.namedParameters().filter(([, p]) => p.stored);
      expect(stored.length).toBeGreaterThan(20);
      expect(stored.every(([, p]) => p.stored!.format === 'bfloat16' && !p.trainable)).toBe(true);
      await loadLoraAdapter(base, PEFT_ADAPTER, { trainable: true });
      const { loss, grads } = valueAndGrads(base, () => batchLoss(base, batch));
      const { diffs, lossDiff } = await checkAgainst('grads_lora_bf16', grads, loss);
      tf.dispose(loss);
      disposeGrads(grads);
      const w = worst(diffs);
      console.log(`(d) LoRA on bf16: ${diffs.length} grads, max abs diff ${w.abs.toExponential(2)} (${w.name}, scale ${w.scale.toFixed(3)}), loss diff ${lossDiff.toExponential(2)}`);
      expect(diffs).toHaveLength(8);
      expect(lossDiff).toBeLessThan(1e-5); // same tolerances as (b): widening bf16 is exact, so float32 on both sides
      for (const d of diffs) expect(d.abs).toBeLessThan(1e-5);
    } finally {
      base.dispose();
    }
  });

  test('(c) every parameter, incl. embeddings, patch embedding, norms, class embedding', async () => {
    // a warm-up call, then one that must leave the tensor count as it found it (every gradient path,
    // incl. the patch embedding's two-op layout change, which once leaked its intermediate)
    const warm = valueAndGrads(model, () => batchLoss(model, batch));
    tf.dispose(warm.loss);
    disposeGrads(warm.grads);
    const before = tf.memory().numTensors;
    const again = valueAndGrads(model, () => batchLoss(model, batch));
    tf.dispose(again.loss);
    disposeGrads(again.grads);
    expect(tf.memory().numTensors).toBe(before);
    const { loss, grads } = valueAndGrads(model, () => batchLoss(model, batch));
    const { diffs, lossDiff, noGrad } = await checkAgainst('grads_full', grads, loss);
    tf.dispose(loss);
    for (const name of noGrad) expect(grads.has(name)).toBe(false); // torch: grad None (post_layernorm is never used)
    disposeGrads(grads);
    const w = worst(diffs);
    console.log(`(c) full: ${diffs.length} grads, max abs diff ${w.abs.toExponential(2)} (${w.name}, scale ${w.scale.toFixed(3)}), loss diff ${lossDiff.toExponential(2)}`);
    for (const d of [...diffs].sort((a, b) => b.abs - a.abs).slice(0, 6)) console.log(`  ${d.name}: abs ${d.abs.toExponential(2)} rel-to-scale ${(d.abs / d.scale).toExponential(2)}`);
    const names = diffs.map((d) => d.name);
    for (const must of [
      'model.language_model.embed_tokens.weight',
      'model.image_tower.embeddings.patch_embedding.weight',
      'model.video_tower.embeddings.class_embedding',
      'model.image_tower.embeddings.position_embedding.weight',
      'model.language_model.norm.weight',
      'model.video_tower.pre_layrnorm.bias',
      'lm_head.weight',
    ]) expect(names).toContain(must);
    expect(lossDiff).toBeLessThan(1e-5);
    for (const d of diffs) expect(d.abs).toBeLessThan(1e-5);
  });

  test('a loss that no trainable parameter influences is an InputError, not a silent empty map', () => {
    freeze(model);
    expect(() => valueAndGrads(model, () => batchLoss(model, batch))).toThrow(/no trainable parameter/);
    unfreeze(model, 'model.image_tower.post_layernorm'); // never applied by Video-LLaVA
    const before = tf.memory().numTensors;
    expect(() => valueAndGrads(model, () => batchLoss(model, batch))).toThrow(InputError);
    expect(tf.memory().numTensors).toBe(before);
  });
});
