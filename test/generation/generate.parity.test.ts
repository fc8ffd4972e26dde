/**
 * Greedy generation against Python: for every fixture model and case, `generated_ids` (8 new tokens from
 * transformers 5.24 `model.generate(..., do_sample=False, eos_token_id=None)`) must match exactly, and the
 * raw logits that chose each token must match `generated_logits`.
 *
 * Tolerance 1e-4 absolute on logits: float32 throughout; the differences come from the accumulation order
 * of matrix multiplies (tfjs kernels vs torch's BLAS), and in decode steps also from summing attention
 * over cache blocks. Token ids are exact: the fixtures record a smallest top-1/top-2 margin per case
 * (`generated_min_margin`, ≥ 0.017) far above that tolerance.
 */
import * as tf from '@tensorflow/tfjs';
import { generate } from '../../src/generation/generate';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { caseNames, diff, modelDir, openCase } from '../helpers/fixtures';

const MODELS = ['tester', 'faithful', 'faithful-fp16', 'faithful-bf16', 'full-multilayer', 'rope-linear', 'rope-dynamic', 'rope-llama3'];
const LOGIT_TOL = 1e-4; // float32 accumulation order (see header)

describe.each(MODELS)('generate on model %s', (name) => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir(name));
  });
  afterAll(() => model?.dispose());

  const cases = caseNames(name);
  test('has generation cases', () => expect(cases.length).toBeGreaterThan(0));

  // The default block size (64) for every case; blocks of 4 for the left-padded batch, so that every
  // decode step attends over several cache blocks. On tester and faithful, every case again with the prompt
  // prefilled in chunks of 5 positions (prefillChunkSize), which must not change a token.
  const runs = cases
    .map((c): [string, number, number | undefined] => [c, 64, undefined])
    .concat(cases.includes('batch_padded') ? [['batch_padded', 4, undefined]] : [])
    .concat(['tester', 'faithful'].includes(name) ? cases.map((c): [string, number, number | undefined] => [c, 4, 5]) : []);
  test.each(runs)('case %s (cache blocks of %i, prefill chunks of %s): ids equal Python, logits within 1e-4', async (caseName, blockSize, chunk) => {
    const f = await openCase(name, caseName);
    const img = f.has('pixel_values_images') ? ((await f.tensor('pixel_values_images')) as tf.Tensor4D) : undefined;
    const vid = f.has('pixel_values_videos') ? ((await f.tensor('pixel_values_videos')) as tf.Tensor5D) : undefined;
    const expectedIds = await f.rows('generated_ids');
    const expectedLogits = await f.tensor('generated_logits'); // [B, 8, V]
    const before = tf.memory().numTensors;
    try {
      const result = await generate(
        model,
        { inputIds: await f.rows('input_ids'), attentionMask: await f.rows('attention_mask'), pixelValuesImages: img, pixelValuesVideos: vid },
        { maxNewTokens: expectedIds[0].length, eosTokenId: null, outputLogits: true, cacheBlockSize: blockSize, prefillChunkSize: chunk },
      );
      expect(tf.memory().numTensors).toBe(before);
      expect(result.newTokens).toEqual(expectedIds);
      const [B, S, V] = expectedLogits.shape;
      const ours = tf.tensor3d(
        Array.from({ length: B }, (_, b) => Array.from({ length: S }, (_, s) => Array.from(result.logits![s][b]))),
        [B, S, V],
      );
      const d = diff(ours, expectedLogits);
      ours.dispose();
      if (!(d.abs <= LOGIT_TOL)) throw new Error(`${name}/${caseName}: generated logits max abs diff ${d.abs} > ${LOGIT_TOL}`);
      expect(result.finishReason.every((r) => r === 'length')).toBe(true);
    } finally {
      tf.dispose([img, vid, expectedLogits].filter((t): t is tf.Tensor => !!t));
      await f.close();
    }
  });
});
