/**
 * Parity at the real 7B widths: CLIP-L (1024 wide, 16 heads, 224 px, patch 14) with 2 layers, a Llama-2-7B
 * decoder layer (4096 wide, 32 heads, 11008 MLP, vocab 32064). The weights (≈ 540M values) are not
 * committed: both sides build them from keys.json with the synthetic formula.
 *
 * This file always runs on wasm, whatever VIDEO_LLAVA_BACKEND says: at ≈ 130 GFLOP it would take minutes
 * on the pure-JS cpu backend, and backend agreement is covered by the tiny fixtures.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../../src/backend';
import { parseVideoLlavaConfig } from '../../src/models/video_llava/config';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { syntheticVideoLlava } from '../../src/models/video_llava/synthetic';
import { toLegacyKey } from '../../src/weights/key_map';
import { CASES, diff, openCase } from '../helpers/fixtures';

const DIR = path.join(CASES, 'slice7b');

// Widths are 32–128× the tiny fixtures', so float32 accumulation noise grows with the dot-product length
// (up to 11008 terms): the tower stays near 1e-5, the decoder and logits near 1e-4.
const TOL = { tower: 1e-4, features: 1e-4, decoder: 2e-4, logits: 5e-4 };

jest.setTimeout(600_000);

let model: VideoLlavaForConditionalGeneration;
beforeAll(async () => {
  await setBackend('wasm');
  const config = parseVideoLlavaConfig(JSON.parse(fs.readFileSync(path.join(DIR, 'config.json'), 'utf8')));
  model = syntheticVideoLlava(config);
});
afterAll(() => model?.dispose());

test('every weight name matches the key list Python saved', () => {
  const keys = JSON.parse(fs.readFileSync(path.join(DIR, 'keys.json'), 'utf8')).keys as Array<{ name: string; shape: number[] }>;
  const ours = model.namedParameters().map(([p, param]) => ({ name: toLegacyKey(p), shape: [...param.shape] }));
  expect(ours.sort((a, b) => a.name.localeCompare(b.name))).toEqual(keys.sort((a, b) => a.name.localeCompare(b.name)));
});

test('image_only: tower, projector, decoder and last-8 logits match Python', async () => {
  const f = await openCase('slice7b', 'image_only');
  const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
  const out = model.forward({
    inputIds: await f.rows('input_ids'),
    attentionMask: await f.rows('attention_mask'),
    pixelValuesImages: img,
    outputHiddenStates: true,
    outputVisionHiddenStates: true,
    logitsToKeep: 8,
  });
  const report: Record<string, number> = {};
  const check = async (key: string, actual: tf.Tensor, tol: number) => {
    const expected = await f.tensor(key);
    report[key] = diff(actual, expected).abs;
    expected.dispose();
    expect(report[key]).toBeLessThanOrEqual(tol);
  };
  const last8 = (t: tf.Tensor) => tf.slice(t, [0, t.shape[1]! - 8, 0], [-1, 8, -1]);
  try {
    for (let k = 0; k <= 2; k++) await check(`image_tower.hidden_states.${k}`, out.imageTowerHiddenStates![k]!, TOL.tower);
    const feats = out.imageHiddenStates!;
    const head = tf.slice(feats, [0, 0, 0], [-1, 8, -1]);
    const tail = last8(feats);
    await check('image_features.head8', head, TOL.features);
    await check('image_features.tail8', tail, TOL.features);
    const states = out.hiddenStates!.map(last8);
    await check('inputs_embeds.last8', states[0], TOL.decoder);
    await check('decoder.hidden_states.0.last8', states[0], TOL.decoder);
    await check('decoder.hidden_states.1.last8', states[1], TOL.decoder);
    await check('logits.last8', out.logits, TOL.logits);
    tf.dispose([head, tail, ...states]);
    console.log('slice7b max abs diffs', JSON.stringify(report));
  } finally {
    disposeOutput(out);
    img.dispose();
    await f.close();
  }
});
