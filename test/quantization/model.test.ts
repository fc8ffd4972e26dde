/**
 * Quantized Video-LLaVA models against Python (reference/gen_bnb.py: transformers 5.24 + bitsandbytes 0.50.2 on CPU,
 * compute dtype float32): the tester quantized and saved by transformers (NF4 with double quantization; LLM.int8)
 * loads as saved, its logits equal the reference's, quantizing the float32 tester at load gives the same checkpoint
 * byte for byte, savePretrained writes it back so, and QLoRA gradients through the frozen NF4 base equal PyTorch's.
 *
 * Which reference: bitsandbytes' own CPU 4-bit inference fails on the tester on this CPU (its AVX512-BF16 repacking
 * raises, its AVX-512 dequantize kernel indexes scales per row), so the NF4 logits are bitsandbytes with those two
 * switched off = dequantize then float32 matmul; the int8 logits are the exact dequantize-then-float32 model, and
 * bitsandbytes' real LLM.int8 path (which quantizes the activations) is reported as drift.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { disposeGrads, valueAndGrads } from '../../src/training/grad';
import { loadLoraAdapter, savePretrained } from '../../src/training/save';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { FIXTURES, diff, modelDir, openCase } from '../helpers/fixtures';
import { Batch, PEFT_ADAPTER, batchLoss, compare, loadBatch } from '../training/training_fixtures';

const BNB = path.join(FIXTURES, 'bnb');
const CASES = ['text_only', 'mixed'];

async function reference(name: string): Promise<tf.Tensor> {
  const f = await SafetensorsFile.open(path.join(BNB, 'logits.safetensors'));
  const t = await f.readTensor(name);
  await f.close();
  return t;
}

async function logits(model: VideoLlavaForConditionalGeneration, caseName: string): Promise<tf.Tensor> {
  const f = await openCase('tester', caseName);
  const img = f.has('pixel_values_images') ? ((await f.tensor('pixel_values_images')) as tf.Tensor4D) : undefined;
  const vid = f.has('pixel_values_videos') ? ((await f.tensor('pixel_values_videos')) as tf.Tensor5D) : undefined;
  const out = model.forward({ inputIds: await f.rows('input_ids'), attentionMask: await f.rows('attention_mask'), pixelValuesImages: img, pixelValuesVideos: vid });
  const l = out.logits.clone();
  disposeOutput(out);
  tf.dispose([img, vid]);
  await f.close();
  return l;
}

/** mean over positions of KL(softmax(p) ‖ softmax(q)) */
function meanKl(p: tf.Tensor, q: tf.Tensor): number {
  return tf.tidy(() => {
    const lp = tf.logSoftmax(p);
    const lq = tf.logSoftmax(q);
    return tf.mean(tf.sum(tf.mul(tf.exp(lp), tf.sub(lp, lq)), -1)).dataSync()[0];
  });
}

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bnb-model-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('NF4 (double quantization), saved by transformers', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(BNB, 'tester-nf4-dq'));
  });
  afterAll(() => model?.dispose());

  test('every Linear but lm_head is nf4; embeddings, norms and lm_head are not', () => {
    const formats = new Map(model.namedParameters().map(([p, w]) => [p, w.stored?.format]));
    const linears = [...formats.keys()].filter((p) => /(proj|fc\d|linear_\d)\.weight$/.test(p));
    expect(linears.length).toBe(40);
    for (const p of linears) expect([p, formats.get(p)]).toEqual([p, 'nf4']);
    expect(formats.get('lm_head.weight')).toBeUndefined();
    expect(formats.get('model.language_model.embed_tokens.weight')).toBeUndefined();
  });

  test.each(CASES)('%s: logits equal bitsandbytes\' (dequantize then float32) within 1e-4', async (c) => {
    const [ours, theirs, f32] = [await logits(model, c), await reference(`${c}.nf4.logits`), await (await openCase('tester', c)).tensor('logits')];
    const d = diff(ours, theirs).abs;
    console.log(`NF4 ${c}: vs bitsandbytes ${d.toExponential(2)}; drift vs float32 max abs ${diff(ours, f32).abs.toFixed(3)}, KL ${meanKl(f32, ours).toExponential(2)}`);
    expect(d).toBeLessThan(1e-4); // float32 products of identical dequantized weights: summation order only
    tf.dispose([ours, theirs, f32]);
  });

  test('quantizing the float32 tester at load gives the transformers checkpoint byte for byte, and saves it back so', async () => {
    const quantized = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('tester'), { quantization: { bits: 4, type: 'nf4', doubleQuant: true } });
    const out = path.join(tmp, 'nf4');
    await savePretrained(quantized, out);
    quantized.dispose();
    const [ours, theirs] = await Promise.all([fsp.readFile(path.join(out, 'model.safetensors')), fsp.readFile(path.join(BNB, 'tester-nf4-dq', 'model.safetensors'))]);
    expect(ours.equals(theirs)).toBe(true);
    const config = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8'));
    const expected = JSON.parse(await fsp.readFile(path.join(BNB, 'tester-nf4-dq', 'config.json'), 'utf8'));
    expect(config.quantization_config).toEqual(expected.quantization_config);
    // and the pre-quantized model saves back unchanged
    const again = path.join(tmp, 'nf4-again');
    await savePretrained(model, again);
    expect((await fsp.readFile(path.join(again, 'model.safetensors'))).equals(theirs)).toBe(true);
  });

  test('QLoRA: gradients of a LoRA adapter through the frozen NF4 base equal PyTorch\'s', async () => {
    const batch: Batch = await loadBatch('A');
    const qlora = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(BNB, 'tester-nf4-dq'));
    await loadLoraAdapter(qlora, PEFT_ADAPTER, { trainable: true });
    const { loss, grads } = valueAndGrads(qlora, () => batchLoss(qlora, batch));
    const f = await SafetensorsFile.open(path.join(BNB, 'qlora.safetensors'));
    const expectedLoss = (await f.readFloat32('loss'))[0];
    expect(Math.abs(loss.dataSync()[0] - expectedLoss)).toBeLessThan(1e-5); // loss ≈ 5: float32 ulps
    let worst = 0;
    for (const key of f.keys().filter((k) => k.startsWith('grad.'))) {
      const name = key.slice('grad.'.length);
      const expected = await f.readTensor(key);
      const d = compare(name, grads.get(name)!, expected);
      worst = Math.max(worst, d.abs);
      expect(d.abs).toBeLessThan(1e-5); // the tolerance of the float32 LoRA gradients (test/training/grad.test.ts)
      expected.dispose();
    }
    console.log(`QLoRA: ${grads.size} gradients, max abs diff ${worst.toExponential(2)}`);
    expect(grads.size).toBe(8);
    await f.close();
    tf.dispose(loss);
    disposeGrads(grads);
    batch.dispose();
    qlora.dispose();
  });
});

describe('8-bit (LLM.int8 weights), saved by transformers', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(BNB, 'tester-int8'));
  });
  afterAll(() => model?.dispose());

  test.each(CASES)('%s: logits equal the dequantize-then-float32 reference within 1e-4; drift of bitsandbytes\' LLM.int8 path reported', async (c) => {
    const ours = await logits(model, c);
    const [dequant, llmInt8, f32] = [await reference(`${c}.int8.logits_dequant`), await reference(`${c}.int8.logits_llm_int8`), await (await openCase('tester', c)).tensor('logits')];
    const d = diff(ours, dequant).abs;
    console.log(`int8 ${c}: vs dequantized reference ${d.toExponential(2)}; vs bitsandbytes LLM.int8 ${diff(ours, llmInt8).abs.toFixed(3)}; drift vs float32 max abs ${diff(ours, f32).abs.toFixed(3)}, KL ${meanKl(f32, ours).toExponential(2)}`);
    expect(d).toBeLessThan(1e-4);
    tf.dispose([ours, dequant, llmInt8, f32]);
  });

  test('quantizing at load gives the transformers checkpoint byte for byte', async () => {
    const quantized = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('tester'), { quantization: { bits: 8 } });
    const out = path.join(tmp, 'int8');
    await savePretrained(quantized, out);
    quantized.dispose();
    const [ours, theirs] = await Promise.all([fsp.readFile(path.join(out, 'model.safetensors')), fsp.readFile(path.join(BNB, 'tester-int8', 'model.safetensors'))]);
    expect(ours.equals(theirs)).toBe(true);
  });
});

test('bad quantization options are typed errors naming the field', async () => {
  const load = (q: object) => VideoLlavaForConditionalGeneration.fromPretrained(modelDir('tester'), { quantization: q as never });
  await expect(load({ bits: 3 })).rejects.toThrow(/quantization\.bits: expected 4 or 8/);
  await expect(load({ bits: 4, type: 'nf5' })).rejects.toThrow(/quantization\.type/);
  await expect(load({ bits: 4, blockSize: 48 })).rejects.toThrow(/quantization\.blockSize/);
  await expect(VideoLlavaForConditionalGeneration.fromPretrained(path.join(BNB, 'tester-nf4-dq'), { quantization: { bits: 4 } })).rejects.toThrow(InputError);
});
