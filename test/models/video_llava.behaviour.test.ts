/** Loading in both key layouts, bad checkpoints and inputs, and tensor ownership. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError, WeightsError } from '../../src/errors';
import { checkWeightsFit, planPromptMemory } from '../../src/models/video_llava/memory';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { SafetensorsFile, TensorEntry, writeSafetensors } from '../../src/weights/safetensors';
import { diff, modelDir, openCase } from '../helpers/fixtures';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-model-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** Copies the faithful checkpoint with every key renamed (or dropped when rename returns null) and tensors edited. */
async function rewrite(
  name: string,
  rename: (key: string) => string | null,
  edit: (key: string, data: Float32Array, shape: number[]) => [Float32Array, number[]] = (_k, d, s) => [d, s],
): Promise<string> {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(modelDir('faithful'), 'config.json'), path.join(dir, 'config.json'));
  const src = await SafetensorsFile.open(path.join(modelDir('faithful'), 'model.safetensors'));
  const entries: TensorEntry[] = [];
  for (const key of src.keys()) {
    const newKey = rename(key);
    if (newKey === null) continue;
    const [data, shape] = edit(key, await src.readFloat32(key), [...src.info(key).shape]);
    entries.push({ name: newKey, dtype: 'F32', shape, data });
  }
  await src.close();
  await writeSafetensors(path.join(dir, 'model.safetensors'), entries);
  return dir;
}

async function logitsOf(model: VideoLlavaForConditionalGeneration, caseName: string): Promise<tf.Tensor> {
  const f = await openCase('faithful', caseName);
  const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
  const vid = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
  const out = model.forward({ inputIds: await f.rows('input_ids'), pixelValuesImages: img, pixelValuesVideos: vid });
  tf.dispose([img, vid]);
  await f.close();
  return out.logits;
}

describe('checkpoint layouts', () => {
  let reference: tf.Tensor;
  beforeAll(async () => {
    const model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('faithful'));
    reference = await logitsOf(model, 'mixed');
    model.dispose();
  });
  afterAll(() => reference.dispose());

  const layouts: Array<[string, (k: string) => string]> = [
    // Pre-5 transformers (the published 7B checkpoint): towers under vision_model.
    ['legacy with vision_model', (k) => k.replace(/^(image|video)_tower\./, '$1_tower.vision_model.')],
    // The in-memory names of transformers 5.24.
    [
      'current in-memory names',
      (k) =>
        k
          .replace(/^language_model\.model\./, 'model.language_model.')
          .replace(/^language_model\.lm_head\./, 'lm_head.')
          .replace(/^(image_tower|video_tower|multi_modal_projector)\./, 'model.$1.'),
    ],
  ];
  test.each(layouts)('%s gives the same logits', async (label, rename) => {
    const dir = await rewrite(label.replace(/\W+/g, '_'), rename);
    const model = await VideoLlavaForConditionalGeneration.fromPretrained(dir);
    const logits = await logitsOf(model, 'mixed');
    expect(diff(logits, reference).abs).toBe(0); // same weights, same kernels: bit-identical
    tf.dispose(logits);
    model.dispose();
  });
});

describe('bad checkpoints', () => {
  test('a missing weight is named', async () => {
    const dir = await rewrite('missing', (k) => (k.endsWith('layers.1.mlp.up_proj.weight') ? null : k));
    await expect(VideoLlavaForConditionalGeneration.fromPretrained(dir)).rejects.toThrow(
      /lacks 1 weights.*model\.language_model\.layers\.1\.mlp\.up_proj\.weight/,
    );
  });

  test('a wrongly shaped weight is named with both shapes', async () => {
    const dir = await rewrite('shape', (k) => k, (k, d, s) => (k === 'multi_modal_projector.linear_1.weight' ? [d, [s[1], s[0]]] : [d, s]));
    const err = await VideoLlavaForConditionalGeneration.fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.message).toMatch(/multi_modal_projector\.linear_1\.weight: expected shape \[64, 32\], found \[32, 64\]/);
  });

  test('unexpected keys are reported, and rejected in strict mode', async () => {
    const dir = await rewrite('extra', (k) => (k === 'multi_modal_projector.linear_1.bias' ? 'temporal_attn.bias' : k));
    // the projector bias now lacks, so loading fails on the missing key; strict names the extra one first
    await expect(VideoLlavaForConditionalGeneration.fromPretrained(dir, { strict: true })).rejects.toThrow(/temporal_attn\.bias/);
  });

  test('a config field of the wrong type is named', async () => {
    const dir = path.join(tmpRoot, 'badconfig');
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(modelDir('faithful'), 'config.json'), 'utf8'));
    cfg.text_config.num_hidden_layers = 'two';
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    const err = await VideoLlavaForConditionalGeneration.fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/text_config\.num_hidden_layers.*expected an integer, found "two"/);
  });

  test('a missing directory and a missing config.json are named', async () => {
    await expect(VideoLlavaForConditionalGeneration.fromPretrained(path.join(tmpRoot, 'nowhere'))).rejects.toThrow(/nowhere: no such directory/);
    fs.mkdirSync(path.join(tmpRoot, 'empty'));
    await expect(VideoLlavaForConditionalGeneration.fromPretrained(path.join(tmpRoot, 'empty'))).rejects.toThrow(/config\.json/);
  });
});

describe('bad inputs and memory', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('faithful'));
  });
  afterAll(() => model.dispose());

  test('placeholder/feature count mismatches throw a clear error and leak nothing', async () => {
    const f = await openCase('faithful', 'image_only');
    const ids = await f.rows('input_ids');
    const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
    await f.close();
    const before = tf.memory().numTensors;
    const twoImages = tf.concat([img, img]) as tf.Tensor4D;
    expect(() => model.forward({ inputIds: ids, pixelValuesImages: twoImages })).toThrow(
      /pixelValuesImages: Image features and image tokens do not match: the prompt has 16 image tokens/,
    );
    expect(() => model.forward({ inputIds: ids })).toThrow(InputError); // tokens but no images
    tf.dispose(twoImages);
    expect(tf.memory().numTensors).toBe(before);
    img.dispose();
  });

  test('wrong pixel shapes, out-of-vocab ids and ragged masks are rejected', () => {
    const wrong = tf.zeros([1, 3, 20, 20]) as tf.Tensor4D;
    expect(() => model.forward({ inputIds: [[1, 120]], pixelValuesImages: wrong })).toThrow(/expected \[N, 3, 28, 28\], found \[1, 3, 20, 20\]/);
    expect(() => model.forward({ inputIds: [[1, 500]] })).toThrow(/token id 500 .* outside the vocabulary \[0, 128\)/);
    expect(() => model.forward({ inputIds: [[1, 5, 6]], attentionMask: [[1, 1]] })).toThrow(/attentionMask: expected 1 rows of length 3/);
    wrong.dispose();
  });

  test('no tensor leaks across 100 forward calls', async () => {
    const f = await openCase('faithful', 'mixed');
    const inputIds = await f.rows('input_ids');
    const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
    const vid = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
    await f.close();
    disposeOutput(model.forward({ inputIds, pixelValuesImages: img, pixelValuesVideos: vid }));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) {
      const out = model.forward({ inputIds, pixelValuesImages: img, pixelValuesVideos: vid, outputHiddenStates: i % 10 === 0, outputAttentions: i % 10 === 0 });
      disposeOutput(out);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([img, vid]);
  });
});

describe('wasm memory guard', () => {
  test('a model whose float32 weights exceed the wasm heap is refused before loading anything', async () => {
    // Only the wasm backend has the 4 GiB cap; elsewhere the same config passes the guard and fails on
    // the checkpoint's (tiny) shapes instead.
    const dir = path.join(tmpRoot, 'huge');
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(modelDir('faithful'), 'config.json'), 'utf8'));
    Object.assign(cfg.text_config, { hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, vocab_size: 32064 });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.copyFileSync(path.join(modelDir('faithful'), 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const backend = tf.getBackend();
    const err = await VideoLlavaForConditionalGeneration.fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(WeightsError);
    if (backend === 'wasm') expect(err.message).toMatch(/needs 2[5-9]\.\d GiB of float32 weights in the wasm backend's memory, which is capped at 4 GiB/);
    // Off wasm the machine's memory decides: refused with the numbers where 27 GiB do not fit, else the tiny
    // checkpoint lacks the weights.
    else expect(err.message).toMatch(/needs 2[5-9]\.\d GiB of float32 tensors .* but this machine has \d+\.\d GiB available|lacks 270 weights/);
  });

  test('every backend: weights that exceed the available memory are refused with the numbers', () => {
    const GiB = 1024 ** 3;
    // 27.4 GiB of float32 (the 7B widened) on a machine with 22 GiB available
    expect(() => checkWeightsFit({ heapBytes: 27.4 * GiB, storedBytes: 0 }, 'm', 22 * GiB, 'cpu')).toThrow(
      /needs 27\.4 GiB of float32 tensors \+ 1\.0 GiB of working room = 28\.4 GiB on the cpu backend, but this machine has 22\.0 GiB available; load with dtype 'auto'/,
    );
    // the same model kept as bfloat16: 13.7 GiB stored + small float32 tensors fits, also on wasm
    for (const backend of ['cpu', 'wasm', 'tensorflow']) {
      expect(() => checkWeightsFit({ heapBytes: 0.01 * GiB, storedBytes: 13.7 * GiB }, 'm', 22 * GiB, backend)).not.toThrow();
    }
    expect(() => checkWeightsFit({ heapBytes: 0.01 * GiB, storedBytes: 13.7 * GiB }, 'm', 12 * GiB, 'wasm')).toThrow(/13\.7 GiB of weights kept as stored .* 12\.0 GiB available/);
    expect(() => checkWeightsFit({ heapBytes: 3.6 * GiB, storedBytes: 0 }, 'm', 22 * GiB, 'wasm')).toThrow(/capped at 4 GiB/);
  });
});

describe('generation memory, planned before the first forward', () => {
  const GiB = 1024 ** 3;
  const llama7b = { num_hidden_layers: 32, num_key_value_heads: 32, head_dim: 128, hidden_size: 4096, intermediate_size: 11008 };

  test('the 8-frame video prompt of the 7B fits the wasm heap: KV cache 2.2 GB, the prompt in one pass or in chunks', () => {
    // 2074 prompt positions + 60 new: 2134 × 32 layers × 2 × 4096 × 4 bytes
    const light = planPromptMemory(llama7b, 1, 2074, 2134, undefined, { heapUsed: 0.1 * GiB });
    expect(light.kvBytes).toBe(2134 * 32 * 2 * 4096 * 4);
    expect(light.prefillChunkSize).toBeUndefined(); // 0.8 GB of activations fit beside it
    const crowded = planPromptMemory(llama7b, 1, 2074, 2134, undefined, { heapUsed: 1.0 * GiB });
    expect(crowded.prefillChunkSize! % 64).toBe(0);
    expect(crowded.prefillChunkSize).toBeLessThan(2074);
    expect(crowded.kvBytes + crowded.activationBytes).toBeLessThan((4 - 1.0 - 0.25) * GiB); // inside the heap's room
    // the caller's chunk is kept
    expect(planPromptMemory(llama7b, 1, 2074, 2134, 256, { heapUsed: 0.1 * GiB }).prefillChunkSize).toBe(256);
  });

  test('a KV cache that cannot fit is refused with the numbers, on wasm and off it', () => {
    expect(() => planPromptMemory(llama7b, 4, 2074, 4096, undefined, { heapUsed: 0.1 * GiB })).toThrow(
      /KV cache 16\.0 GiB for 4096 positions × 4 rows .* the wasm backend's 4 GiB memory has 3\.6 GiB left/,
    );
    expect(() => planPromptMemory(llama7b, 4, 2074, 4096, undefined, { heapUsed: null, available: 6 * GiB })).toThrow(/needs .* GiB but this machine has 6\.0 GiB available/);
  });
});

describe('chunked prefill (prefillChunkSize)', () => {
  let model: VideoLlavaForConditionalGeneration;
  beforeAll(async () => {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('faithful'));
  });
  afterAll(() => model?.dispose());

  test('same last logits as one pass, the cache filled the same; bad combinations are InputErrors', async () => {
    const { BlockKVCache } = await import('../../src/generation/cache');
    const f = await openCase('faithful', 'mixed');
    const ids = await f.rows('input_ids');
    const img = (await f.tensor('pixel_values_images')) as tf.Tensor4D;
    const vid = (await f.tensor('pixel_values_videos')) as tf.Tensor5D;
    await f.close();
    const run = (chunk?: number) => {
      const cache = new BlockKVCache(8);
      const out = model.forward({ inputIds: ids, pixelValuesImages: img, pixelValuesVideos: vid, cache, logitsToKeep: 1, prefillChunkSize: chunk });
      const length = cache.length;
      cache.dispose();
      return { logits: out.logits, length };
    };
    const whole = run();
    const before = tf.memory().numTensors;
    const chunked = run(7);
    expect(chunked.length).toBe(whole.length);
    // same float32 math; a chunk's attention sums over cache blocks in another order (model tolerance 1e-4)
    expect(diff(chunked.logits, whole.logits).abs).toBeLessThan(1e-4);
    chunked.logits.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const cache = new BlockKVCache(8);
    const bad = (input: Partial<Parameters<typeof model.forward>[0]>) => () =>
      model.forward({ inputIds: ids, pixelValuesImages: img, pixelValuesVideos: vid, cache, logitsToKeep: 1, prefillChunkSize: 7, ...input });
    expect(bad({ cache: undefined })).toThrow(/prefillChunkSize.*needs a cache/);
    expect(bad({ logitsToKeep: 0 })).toThrow(InputError);
    expect(bad({ outputHiddenStates: true })).toThrow(/prefillChunkSize/);
    expect(bad({ prefillChunkSize: 0 })).toThrow(/positive integer/);
    expect(tf.memory().numTensors).toBe(before);
    cache.dispose();
    tf.dispose([whole.logits, img, vid]);
  });
});
