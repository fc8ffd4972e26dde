/**
 * computeDtype 'bfloat16' changes the numbers on purpose (the inputs of every product with a large weight are
 * rounded to bfloat16; accumulation, norms, softmax and residuals stay float32). Not parity: the drift is measured
 * and reported beside the float32 parity, against Python's float32 logits (the parity fixtures) and against
 * PyTorch's own bfloat16 forward (reference/gen_bf16_compute.py, torch_dtype=torch.bfloat16, where every operation
 * is bfloat16).
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { FIXTURES, caseNames, diff, modelDir, openCase } from '../helpers/fixtures';

const MODEL = 'faithful-bf16';

async function logitsOf(model: VideoLlavaForConditionalGeneration, name: string): Promise<tf.Tensor> {
  const f = await openCase(MODEL, name);
  const img = f.has('pixel_values_images') ? ((await f.tensor('pixel_values_images')) as tf.Tensor4D) : undefined;
  const vid = f.has('pixel_values_videos') ? ((await f.tensor('pixel_values_videos')) as tf.Tensor5D) : undefined;
  const out = model.forward({ inputIds: await f.rows('input_ids'), attentionMask: await f.rows('attention_mask'), pixelValuesImages: img, pixelValuesVideos: vid });
  const logits = out.logits.clone();
  disposeOutput(out);
  tf.dispose([img, vid]);
  await f.close();
  return logits;
}

test('bfloat16 compute: drift against float32 and against PyTorch bfloat16, measured per case', async () => {
  const f32 = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir(MODEL));
  const bf16 = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir(MODEL), { computeDtype: 'bfloat16' });
  expect(bf16.lm_head.weight.stored?.compute).toBe('bfloat16');
  const rows: string[] = [];
  for (const name of caseNames(MODEL)) {
    const expected = await (await openCase(MODEL, name)).tensor('logits');
    const torchFile = await SafetensorsFile.open(path.join(FIXTURES, 'bf16_compute', MODEL, `${name}.safetensors`));
    const torchBf16 = await torchFile.readTensor('logits');
    await torchFile.close();
    const [ours32, ours16] = [await logitsOf(f32, name), await logitsOf(bf16, name)];
    const parity = diff(ours32, expected).abs;
    const drift = diff(ours16, expected).abs;
    const toTorchBf16 = diff(ours16, torchBf16).abs;
    const torchDrift = diff(torchBf16, expected).abs;
    const scale = tf.tidy(() => tf.max(tf.abs(expected)).dataSync()[0]);
    rows.push(`${name}: logits scale ${scale.toFixed(2)}; float32 parity ${parity.toExponential(2)}; bf16 compute vs float32 ${drift.toExponential(2)}, vs PyTorch bf16 ${toTorchBf16.toExponential(2)}; PyTorch bf16 vs float32 ${torchDrift.toExponential(2)}`);
    expect(parity).toBeLessThan(1e-4); // the parity suite's tolerance, unchanged
    // The rounding shows (bfloat16 keeps 8 significant bits) but stays a small fraction of the logits' scale, and
    // below the drift of PyTorch's all-bfloat16 forward, which rounds far more (norms, softmax, residuals too).
    expect(drift).toBeGreaterThan(10 * parity);
    expect(drift).toBeLessThan(0.05 * scale);
    expect(drift).toBeLessThan(torchDrift);
    tf.dispose([expected, torchBf16, ours32, ours16]);
  }
  console.log(rows.join('\n'));
  f32.dispose();
  bf16.dispose();
});
