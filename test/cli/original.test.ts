/**
 * The original-layout checkpoint from the command line: `generate` runs the synthetic original Video-LLaVA
 * (LlavaLlamaForCausalLM .bin shards, LanguageBind towers found next to it) end to end, and `convert` goes to the
 * HF layout and back without changing a logit.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../../src/cli/main';
import { generate } from '../../src/generation/generate';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { expandOriginalIds } from '../../src/models/video_llava/original';
import { originalFrameIndices } from '../../src/processing/languagebind';
import { VideoLlavaProcessor } from '../../src/processing/processor';
import { originalProcessor } from '../../src/processing/original_processor';
import { countVideoFrames } from '../../src/processing/video';
import { capture } from '../helpers/cli';
import { FIXTURES, diff, openCase } from '../helpers/fixtures';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(FIXTURES, 'original', 'Video-LLaVA');
const VIDEO = path.join(ROOT, 'assets', 'sample-shapes.mp4');

async function logitsOf(model: VideoLlavaForConditionalGeneration): Promise<{ ours: tf.Tensor; expected: tf.Tensor }> {
  const f = await openCase('original', 'video');
  const { inputIds } = expandOriginalIds(await f.rows('input_ids'), ['video'], model.config, 8);
  const pixels = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
  const out = model.forward({ inputIds, pixelValuesVideos: pixels });
  const ours = out.logits.clone();
  disposeOutput(out);
  pixels.dispose();
  const expected = await f.tensor('logits');
  await f.close();
  return { ours, expected };
}

describe('video-llava generate on an original-layout checkpoint', () => {
  test('runs end to end: LanguageBind preprocessing, temporal tower, the same ids as the library', async () => {
    const io = capture();
    const code = await main(['generate', '--model', MODEL, '--video', VIDEO, '--prompt', 'What happens?', '--max-new-tokens', '6', '--json']);
    io.restore();
    expect(io.err.join('')).toBe('');
    expect(code).toBe(0);
    const result = JSON.parse(io.out.join(''));
    expect(result.newTokenIds).toHaveLength(6);
    expect(result.frameIndices).toEqual([originalFrameIndices(await countVideoFrames(VIDEO), 8)]);
    // The same through the library: processor of the original checkpoint + model + generate.
    const model = await VideoLlavaForConditionalGeneration.fromPretrained(MODEL);
    try {
      const c = model.config;
      const processor = originalProcessor(MODEL, { imageTokenId: 601, videoTokenId: 602, patchSize: c.vision_config.patch_size, imageSize: 28, strategy: 'default' });
      const inputs = await processor.call(result.prompt, { videos: [VIDEO] });
      expect(inputs.inputIds[0].filter((id) => id === 602)).toHaveLength(8 * 17); // 8 frames × (16 patches + CLS)
      expect(inputs.pixelValuesVideos!.shape).toEqual([1, 8, 3, 28, 28]);
      const r = await generate(model, inputs, { maxNewTokens: 6 });
      expect(r.newTokens[0]).toEqual(result.newTokenIds);
      inputs.pixelValuesVideos!.dispose();
    } finally {
      model.dispose();
    }
  });

  test('a tower that cannot be found is one clear line naming the flag', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'orig-'));
    const copy = path.join(tmp, 'Video-LLaVA');
    await fsp.cp(MODEL, copy, { recursive: true });
    const io = capture();
    const code = await main(['generate', '--model', copy, '--video', VIDEO, '--prompt', 'x', '--offline']);
    io.restore();
    expect(code).toBe(1);
    expect(io.err.join('')).toMatch(/video tower "LanguageBind\/LanguageBind_Video_merge" \(mm_video_tower\) cannot be loaded.*--video-tower/);
  });
});

describe('video-llava convert', () => {
  test('original → hf keeps the temporal tower (same logits), → original again (same logits)', async () => {
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'convert-'));
    const hf = path.join(tmp, 'hf');
    let io = capture();
    expect(await main(['convert', '--model', MODEL, '--out', hf])).toBe(0);
    io.restore();
    expect(io.out.join('')).toMatch(/converted .* to the hf layout/);
    const config = JSON.parse(await fsp.readFile(path.join(hf, 'config.json'), 'utf8'));
    expect(config.video_temporal_attention).toEqual({ num_frames: 8 });
    expect(config.vision_config.hidden_act).toBe('gelu');

    const model = await VideoLlavaForConditionalGeneration.fromPretrained(hf);
    const a = await logitsOf(model);
    expect(diff(a.ours, a.expected).abs).toBeLessThanOrEqual(1e-4); // float32 summation order, as the parity tests
    // The converted processor files give the original pipeline and the same prompt ids.
    const processor = await VideoLlavaProcessor.fromPretrained(hf);
    expect(processor.config.video_preprocessing).toBe('languagebind');
    expect(processor.tokenizer.tokenToId('<video>')).toBe(602);
    model.dispose();

    const back = path.join(tmp, 'orig');
    io = capture();
    expect(await main(['convert', '--model', hf, '--out', back, '--dtype', 'float16'])).toBe(0);
    io.restore();
    const again = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(back, 'Video-LLaVA')); // towers: the sibling folders
    const b = await logitsOf(again);
    expect(again.config.video_temporal_attention).toEqual({ num_frames: 8 });
    expect(diff(b.ours, b.expected).abs).toBeLessThanOrEqual(1e-4); // the weights are float16-exact, so float16 storage loses nothing
    again.dispose();
    tf.dispose([a.ours, a.expected, b.ours, b.expected]);

    // Without the config field the folder runs the HF port's architecture; the temporal weights are then unused.
    delete config.video_temporal_attention;
    await fsp.writeFile(path.join(hf, 'config.json'), JSON.stringify(config));
    let unused: string[] = [];
    const port = await VideoLlavaForConditionalGeneration.fromPretrained(hf, { onUnexpectedKeys: (k) => (unused = k) });
    expect(unused.length).toBe(3 * 11);
    expect(unused.every((k) => k.includes('.temporal_'))).toBe(true);
    port.dispose();
  });

  test('bad arguments are one line each', async () => {
    const io = capture();
    const codes = [
      await main(['convert', '--model', MODEL]),
      await main(['convert', '--model', MODEL, '--out', '/tmp/x', '--to', 'gguf']),
      await main(['convert', '--model', MODEL, '--out', '/tmp/x', '--to', 'original']),
    ];
    io.restore();
    expect(codes).toEqual([1, 1, 1]);
    const lines = io.err.join('').trim().split('\n');
    expect(lines[0]).toMatch(/--out: is required/);
    expect(lines[1]).toMatch(/--to: expected one of hf, original/);
    expect(lines[2]).toMatch(/already in the original layout/);
  });
});
