/**
 * Stage-by-stage parity with the Python reference (transformers 5.24, float32, eager attention) on every
 * fixture model and case written by reference/gen_models.py.
 *
 * Tolerances: float32 throughout; the differences come only from the summation order of the matrix
 * multiplies (tfjs kernels vs torch's CPU BLAS). The fixtures use initializer_range 0.1–0.2, so
 * activations are O(1–10) and rounding noise is O(1e-6) per layer, growing with depth.
 */
import * as tf from '@tensorflow/tfjs';
import { VideoLlavaForConditionalGeneration, VideoLlavaForwardOutput, disposeOutput } from '../../src/models/video_llava/modeling';
import { CaseFile, caseNames, diff, modelDir, openCase } from '../helpers/fixtures';

const TOL = {
  tower: 2e-5, // each CLIP hidden state: a few layers of float32 rounding (seen ≤ 5e-6)
  features: 5e-5, // projector output: two more matmuls on top (seen ≤ 8e-6)
  decoder: 1e-4, // each decoder hidden state, incl. the merged inputs_embeds (seen ≤ 3e-5)
  logits: 1e-4, // the target for float32 logits (seen ≤ 2.3e-5)
};

// The 16-bit fixtures load as stored (large weights bfloat16 / float16 outside the heap, the default) and, as a
// second entry, widened to float32 tensors (dtype 'float32'): widening is exact, so both are held to the same
// tolerances.
const MODELS: Array<[string, 'auto' | 'float32']> = [
  ['tester', 'auto'],
  ['faithful', 'auto'],
  ['faithful-fp16', 'auto'],
  ['faithful-bf16', 'auto'],
  ['faithful-fp16', 'float32'],
  ['faithful-bf16', 'float32'],
  ['full-multilayer', 'auto'],
  ['rope-linear', 'auto'],
  ['rope-dynamic', 'auto'],
  ['rope-llama3', 'auto'],
];
const STORED: Record<string, string> = { 'faithful-fp16': 'float16', 'faithful-bf16': 'bfloat16' };

async function runCase(model: VideoLlavaForConditionalGeneration, f: CaseFile): Promise<VideoLlavaForwardOutput> {
  const img = f.has('pixel_values_images') ? ((await f.tensor('pixel_values_images')) as tf.Tensor4D) : undefined;
  const vid = f.has('pixel_values_videos') ? ((await f.tensor('pixel_values_videos')) as tf.Tensor5D) : undefined;
  try {
    return model.forward({
      inputIds: await f.rows('input_ids'),
      attentionMask: await f.rows('attention_mask'),
      pixelValuesImages: img,
      pixelValuesVideos: vid,
      outputHiddenStates: true,
      outputVisionHiddenStates: true,
    });
  } finally {
    img?.dispose();
    vid?.dispose();
  }
}

describe.each(MODELS)('model %s (dtype %s)', (name, dtype) => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir(name), { dtype });
  });

  test('large weights are kept in the format the dtype option asks for', () => {
    const stored = dtype === 'auto' ? STORED[name] : undefined;
    for (const [path, p] of model.namedParameters()) {
      const large = path.endsWith('proj.weight') || /linear_\d\.weight|fc\d\.weight|embed_tokens|lm_head/.test(path);
      expect([path, p.stored?.format]).toEqual([path, large ? stored : undefined]);
    }
  });
  afterAll(() => model?.dispose());

  const cases = caseNames(name);
  test('has fixture cases', () => expect(cases.length).toBeGreaterThan(0));

  test.each(cases)('case %s matches Python at every stage', async (caseName) => {
    const f = await openCase(name, caseName);
    const out = await runCase(model, f);
    const checked: string[] = [];
    const expectClose = async (key: string, actual: tf.Tensor | null | undefined, tol: number) => {
      expect(actual).toBeTruthy();
      const expected = await f.tensor(key);
      const d = diff(actual!, expected);
      expected.dispose();
      if (!(d.abs <= tol)) throw new Error(`${name}/${caseName} ${key}: max abs diff ${d.abs} > ${tol}`);
      checked.push(key);
    };
    try {
      for (const tower of ['image_tower', 'video_tower'] as const) {
        const states = tower === 'image_tower' ? out.imageTowerHiddenStates : out.videoTowerHiddenStates;
        for (let k = 0; f.has(`${tower}.hidden_states.${k}`); k++) await expectClose(`${tower}.hidden_states.${k}`, states?.[k], TOL.tower);
      }
      if (f.has('image_features')) await expectClose('image_features', out.imageHiddenStates, TOL.features);
      if (f.has('video_features')) await expectClose('video_features', out.videoHiddenStates, TOL.features);
      await expectClose('inputs_embeds', out.hiddenStates![0], TOL.decoder);
      for (let k = 0; f.has(`decoder.hidden_states.${k}`); k++) await expectClose(`decoder.hidden_states.${k}`, out.hiddenStates![k], TOL.decoder);
      await expectClose('logits', out.logits, TOL.logits);
      expect(checked).toContain('logits');
      expect(checked.length).toBeGreaterThanOrEqual(4);
    } finally {
      disposeOutput(out);
      await f.close();
    }
  });
});
