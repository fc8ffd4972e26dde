/**
 * Without the native addon (VIDEO_LLAVA_ADDON=0, or not built): stored weights still load as stored and every
 * product runs, on blocks of the weight widened into the heap one at a time, with the same numbers and one
 * notice line. Parity with Python on a 16-bit fixture holds on this path too.
 */
process.env.VIDEO_LLAVA_ADDON = '0';

import * as tf from '@tensorflow/tfjs';
import { addonNotice, nativeAddon } from '../../src/native/addon';
import { storedMatMul } from '../../src/native/stored_matmul';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { HalfWeight } from '../../src/weights/stored';
import { diff, modelDir, openCase } from '../helpers/fixtures';

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

test('the addon is off and says so in one line', () => {
  expect(nativeAddon()).toBeNull();
  expect(addonNotice()).toMatch(/^native weight kernels off \(VIDEO_LLAVA_ADDON=0\): 16-bit weights are widened block by block/);
});

test.each(['bfloat16', 'float16'] as const)('widened blocks: same products and gradient as tf.matMul on the widened weight (%s)', (format) => {
  const w = HalfWeight.fromFloat32(values(70 * 24, 3), [70, 24], format);
  const W = tf.tensor2d(w.widenRows(0, 70), [70, 24]);
  const x = tf.tensor2d(values(5 * 24, 4), [5, 24]);
  const dy = tf.tensor2d(values(5 * 70, 5), [5, 70]);
  const before = tf.memory().numTensors;
  const outs = [storedMatMul(x, w), tf.matMul(x, W, false, true), storedMatMul(dy, w, true), tf.matMul(dy, W)];
  const grads = [tf.grad((v: tf.Tensor) => tf.sum(storedMatMul(v as tf.Tensor2D, w)))(x), tf.grad((v: tf.Tensor) => tf.sum(tf.matMul(v, W, false, true)))(x)];
  expect(tf.memory().numTensors).toBe(before + outs.length + grads.length); // no block left behind
  // float32 both ways, other summation orders
  expect(diff(outs[0], outs[1]).abs).toBeLessThan(1e-5);
  expect(diff(outs[2], outs[3]).abs).toBeLessThan(1e-5);
  expect(diff(grads[0], grads[1]).abs).toBeLessThan(1e-5);
  tf.dispose([W, x, dy, ...outs, ...grads]);
});

test('faithful-bf16 loads as stored and matches Python\'s logits without the addon', async () => {
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('faithful-bf16'));
  expect(model.lm_head.weight.stored?.format).toBe('bfloat16');
  const f = await openCase('faithful-bf16', 'mixed');
  const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
  const vid = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
  const out = model.forward({ inputIds: await f.rows('input_ids'), attentionMask: await f.rows('attention_mask'), pixelValuesImages: img, pixelValuesVideos: vid });
  const expected = await f.tensor('logits');
  expect(diff(out.logits, expected).abs).toBeLessThan(1e-4); // the parity suite's logits tolerance
  tf.dispose([img, vid, expected]);
  disposeOutput(out);
  await f.close();
  model.dispose();
});
