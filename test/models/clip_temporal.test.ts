/**
 * LanguageBind's temporal sub-block in the CLIP encoder layer (src/models/clip/temporal.ts): gradients against
 * PyTorch backward() through the original LanguageBind vision_model (reference/gen_original.py), freezing and hooks
 * by module path, frames never mixing across videos, typed errors for frame counts, no leaked tensors.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../src/errors';
import { ClipVisionModel } from '../../src/models/clip/modeling';
import { loadLanguageBindTower } from '../../src/models/video_llava/original';
import { NamedGrads, disposeGrads, valueAndGrads } from '../../src/training/grad';
import { freeze, unfreeze } from '../../src/training/params';
import { FIXTURES, diff, openCase } from '../helpers/fixtures';

const VIDEO_TOWER = path.join(FIXTURES, 'original', 'LanguageBind_Video_merge');
const FRAMES = 8;

let tower: ClipVisionModel;
beforeAll(async () => {
  tower = await loadLanguageBindTower(VIDEO_TOWER);
});
afterAll(() => tower?.dispose());

/** hidden_states[-2] of N videos [N, T, C, H, W] laid out [N·T, C, H, W]. */
function penultimate(pixels: tf.Tensor5D, frames = FRAMES): tf.Tensor3D {
  const [N, T, C, H, W] = pixels.shape;
  const layer = tower.config.num_hidden_layers - 1;
  return tf.tidy(() => {
    const { hiddenStates } = tower.call(tf.reshape(pixels, [N * T, C, H, W]) as tf.Tensor4D, { numLayers: layer, keep: (i) => i === layer, framesPerVideo: frames });
    return hiddenStates[layer]!;
  });
}

describe('temporal tower', () => {
  test('has the temporal sub-block in every layer, under the checkpoint names', () => {
    const names = tower.namedParameters().map(([n]) => n);
    for (let i = 0; i < tower.config.num_hidden_layers; i++) {
      for (const p of ['temporal_embedding', 'temporal_layer_norm1.weight', 'temporal_layer_norm1.bias', 'temporal_attn.q_proj.weight', 'temporal_attn.out_proj.bias']) {
        expect(names).toContain(`encoder.layers.${i}.${p}`);
      }
    }
    expect(tower.getParameter('encoder.layers.0.temporal_embedding').shape).toEqual([1, FRAMES, tower.config.hidden_size]);
    const plain = new ClipVisionModel(tower.config);
    expect(plain.namedParameters().some(([n]) => n.includes('temporal'))).toBe(false); // the HF tower is unchanged
  });

  test('gradients of every parameter match torch backward() through the original vision_model', async () => {
    const f = await openCase('original', 'grads');
    const pixels = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
    const weights = await f.tensor('weights');
    try {
      const lossTensor = await f.tensor('loss');
      const expectedLoss = lossTensor.dataSync()[0];
      lossTensor.dispose();
      const before = tf.memory().numTensors;
      const { loss, grads } = valueAndGrads(tower, () => tf.tidy(() => tf.sum(tf.mul(penultimate(pixels), weights)) as tf.Scalar));
      expect(Math.abs(loss.dataSync()[0] - expectedLoss)).toBeLessThanOrEqual(1e-3 * Math.abs(expectedLoss) + 1e-3); // a sum of ~10^4 products
      let worst = { name: '', abs: 0, scale: 0 };
      const expectedNames = [...f.file.tensors.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
      for (const name of expectedNames) {
        const e = await f.tensor(`grad.${name}`);
        const g = grads.get(name);
        if (!g) throw new Error(`no gradient for ${name}`);
        const d = diff(g, e);
        const scale = tf.tidy(() => tf.max(tf.abs(e)).dataSync()[0]);
        if (d.abs > worst.abs) worst = { name, abs: d.abs, scale };
        // float32, summation order only; gradients here are O(1–100): relative to each tensor's own scale.
        expect(d.abs).toBeLessThanOrEqual(1e-4 * Math.max(1, scale));
        e.dispose();
      }
      // 11 temporal parameters per layer; the last layer does not reach hidden_states[-2] (torch: grad None).
      expect(expectedNames.filter((n) => n.includes('temporal')).length).toBe(2 * 11);
      expect([...grads.keys()].sort()).toEqual(expectedNames.sort());
      console.log(`temporal tower: ${expectedNames.length} gradients vs torch, worst ${worst.name} abs ${worst.abs.toExponential(2)} (scale ${worst.scale.toFixed(2)})`);
      tf.dispose(loss);
      disposeGrads(grads);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      tf.dispose([pixels, weights]);
      await f.close();
    }
  });

  test('freezing by module path: only the temporal modules train (LanguageBind\'s recipe), with the same gradients', async () => {
    const f = await openCase('original', 'grads');
    const pixels = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
    const weights = await f.tensor('weights');
    let grads: NamedGrads | undefined;
    try {
      freeze(tower);
      const selected = unfreeze(tower, ['*.temporal_attn', '*.temporal_layer_norm1', '*.temporal_embedding']);
      expect(selected).toHaveLength(3 * 11);
      const r = valueAndGrads(tower, () => tf.tidy(() => tf.sum(tf.mul(penultimate(pixels), weights)) as tf.Scalar));
      grads = r.grads;
      r.loss.dispose();
      expect([...grads.keys()].sort()).toEqual(selected.filter((n) => !n.startsWith('encoder.layers.2.')).sort());
      const e = await f.tensor('grad.encoder.layers.0.temporal_attn.v_proj.weight');
      expect(diff(grads.get('encoder.layers.0.temporal_attn.v_proj.weight')!, e).abs).toBeLessThanOrEqual(1e-4 * 100);
      e.dispose();
    } finally {
      if (grads) disposeGrads(grads);
      unfreeze(tower);
      tf.dispose([pixels, weights]);
      await f.close();
    }
  });

  test('hooks by module path see the temporal attention run on [N·n, T, D]', () => {
    const pixels = tf.randomNormal([2, FRAMES, 3, 28, 28]) as tf.Tensor5D;
    const shapes: number[][] = [];
    const handle = tower.getSubmodule('encoder.layers.1.temporal_attn').registerForwardHook((_m, args) => {
      shapes.push((args[0] as tf.Tensor).shape);
    });
    try {
      penultimate(pixels).dispose();
    } finally {
      handle.remove();
      pixels.dispose();
    }
    expect(shapes).toEqual([[2 * 17, FRAMES, tower.config.hidden_size]]);
  });

  test('frames never mix across videos: two videos at once give what each gives alone', () => {
    const a = tf.randomNormal([1, FRAMES, 3, 28, 28]) as tf.Tensor5D;
    const b = tf.randomNormal([1, FRAMES, 3, 28, 28]) as tf.Tensor5D;
    const both = tf.concat([a, b]) as tf.Tensor5D;
    const [ya, yb, yy] = [penultimate(a), penultimate(b), penultimate(both)];
    const [ya2, yb2] = tf.split(yy, 2);
    expect(diff(ya2, ya).abs).toBeLessThanOrEqual(1e-5); // same math, batched: summation order only
    expect(diff(yb2, yb).abs).toBeLessThanOrEqual(1e-5);
    // …and the temporal block does mix the frames of one video: changing frame 7 changes frame 0's output.
    const changed = tf.concat([tf.slice(a, [0, 0], [1, 7]), tf.randomNormal([1, 1, 3, 28, 28])], 1) as tf.Tensor5D;
    const yc = penultimate(changed);
    expect(diff(tf.slice(yc, [0, 0, 0], [1, -1, -1]), tf.slice(ya, [0, 0, 0], [1, -1, -1])).abs).toBeGreaterThan(1e-3);
    tf.dispose([a, b, both, ya, yb, yy, ya2, yb2, changed, yc]);
  });

  test('a frame count the temporal embedding does not cover, or that does not divide the frames, is an InputError', () => {
    const nine = tf.zeros([9, 3, 28, 28]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    expect(() => tower.call(nine, { framesPerVideo: 9 })).toThrow(InputError);
    expect(() => tower.call(nine, { framesPerVideo: 9 })).toThrow(/temporal_embedding covers 8/);
    expect(() => tower.call(nine, { framesPerVideo: 2 })).toThrow(/9 frames cannot be grouped into videos of 2 frames/);
    expect(tf.memory().numTensors).toBe(before);
    nine.dispose();
    // Fewer frames than the embedding covers use its first T rows (the original's [:, :t] slice).
    const four = tf.zeros([1, 4, 3, 28, 28]) as tf.Tensor5D;
    penultimate(four, 4).dispose();
    four.dispose();
  });
});
