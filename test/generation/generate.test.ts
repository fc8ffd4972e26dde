/**
 * generate() behaviour on the tester fixture model: options and their errors, eos and padding of finished
 * rows, stop strings, streaming, abort, seeded sampling, hooks inside generate, vision at prefill only,
 * timings and tensor memory. Parity of greedy ids/logits with Python is in generate.parity.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { GenerateInputs, GenerateOptions, generate, generateStream, loadGenerationConfig } from '../../src/generation/generate';
import { TokenDecoder } from '../../src/generation/streamer';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { modelDir, openCase } from '../helpers/fixtures';

/** Each id decodes to two letters, so text is easy to predict. */
const letters: TokenDecoder = {
  decode: (ids) => ids.map((i) => String.fromCharCode(97 + (i % 26)) + String.fromCharCode(97 + Math.floor(i / 26))).join(''),
};

let model: VideoLlavaForConditionalGeneration;
let textOnly: GenerateInputs;
let batch: GenerateInputs & { inputIds: number[][]; attentionMask: number[][] };
let batchExpected: number[][];
let imageOnly: GenerateInputs;

beforeAll(async () => {
  model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir('tester'));
  const t = await openCase('tester', 'text_only');
  textOnly = { inputIds: await t.rows('input_ids') };
  await t.close();
  const b = await openCase('tester', 'batch_padded');
  batch = {
    inputIds: await b.rows('input_ids'),
    attentionMask: await b.rows('attention_mask'),
    pixelValuesImages: (await b.tensor('pixel_values_images')) as tf.Tensor4D,
    pixelValuesVideos: (await b.tensor('pixel_values_videos')) as tf.Tensor5D,
  };
  batchExpected = await b.rows('generated_ids');
  await b.close();
  const i = await openCase('tester', 'image_only');
  imageOnly = { inputIds: await i.rows('input_ids'), pixelValuesImages: (await i.tensor('pixel_values_images')) as tf.Tensor4D };
  await i.close();
});

afterAll(() => {
  const owned: Array<tf.Tensor | undefined> = [batch?.pixelValuesImages, batch?.pixelValuesVideos, imageOnly?.pixelValuesImages];
  tf.dispose(owned.filter((x): x is tf.Tensor => !!x));
  model?.dispose();
});

describe('options', () => {
  test.each<[string, GenerateInputs | null, GenerateOptions]>([
    ['inputIds', { inputIds: [] }, {}],
    ['inputIds', { inputIds: [[]] }, {}],
    ['inputIds', { inputIds: [[1, 2], [3]] }, {}],
    ['attentionMask', null, { maxNewTokens: 1 }],
    ['maxNewTokens', null, { maxNewTokens: -1 }],
    ['maxNewTokens', null, { maxNewTokens: 1.5 }],
    ['maxLength', null, { maxLength: 12 }],
    ['temperature', null, { doSample: true, temperature: 0 }],
    ['topK', null, { doSample: true, topK: -1 }],
    ['topP', null, { doSample: true, topP: 0 }],
    ['repetitionPenalty', null, { repetitionPenalty: 0 }],
    ['minNewTokens', null, { minNewTokens: -2 }],
    ['eosTokenId', null, { eosTokenId: 99 }],
    ['padTokenId', null, { padTokenId: -1 }],
    ['seed', null, { doSample: true, seed: -3 }],
    ['stopStrings', null, { stopStrings: ['x'] }],
  ])('%s (case %#): InputError before any forward', async (argument, inputs, options) => {
    const before = tf.memory().numTensors;
    const given = inputs ?? (argument === 'attentionMask' ? { inputIds: textOnly.inputIds, attentionMask: [[...new Array(11).fill(1), 0]] } : textOnly);
    await expect(generate(model, given, options)).rejects.toMatchObject({ name: 'InputError', argument });
    expect(tf.memory().numTensors).toBe(before);
  });

  test('maxNewTokens 0 returns the prompt without running the model', async () => {
    const r = await generate(model, textOnly, { maxNewTokens: 0 });
    expect(r.newTokens).toEqual([[]]);
    expect(r.sequences).toEqual(textOnly.inputIds);
    expect(r.timings.prefillTokens).toBe(0);
  });

  test('maxLength counts the prompt; the default is 20 new tokens; generationConfig supplies defaults', async () => {
    const L = (textOnly.inputIds as number[][])[0].length;
    expect((await generate(model, textOnly, { maxLength: L + 3, eosTokenId: null })).newTokens[0]).toHaveLength(3);
    expect((await generate(model, textOnly, { eosTokenId: null })).newTokens[0]).toHaveLength(20);
    const g = { maxNewTokens: 2, eosTokenId: null };
    expect((await generate(model, textOnly, { generationConfig: g })).newTokens[0]).toHaveLength(2);
    expect((await generate(model, textOnly, { generationConfig: g, maxNewTokens: 4 })).newTokens[0]).toHaveLength(4);
  });

  test('loadGenerationConfig reads generation_config.json, {} when absent, ConfigError when malformed', async () => {
    expect(await loadGenerationConfig(modelDir('tester'))).toEqual({ bosTokenId: 4, eosTokenId: 5, padTokenId: 3 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gencfg-'));
    try {
      expect(await loadGenerationConfig(dir)).toEqual({});
      fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"top_k": "many", "do_sample": true}');
      await expect(loadGenerationConfig(dir)).rejects.toMatchObject({ name: 'ConfigError', field: 'top_k' });
      fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id": [2, 7], "temperature": 0.5, "max_new_tokens": 9}');
      expect(await loadGenerationConfig(dir)).toEqual({ eosTokenId: [2, 7], temperature: 0.5, maxNewTokens: 9 });
      fs.writeFileSync(path.join(dir, 'generation_config.json'), '{');
      await expect(loadGenerationConfig(dir)).rejects.toMatchObject({ name: 'ConfigError' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('stopping', () => {
  test('a row that emits eos stops and is padded while the others continue unchanged', async () => {
    // Python's ids were made with eos disabled; row 1 emits the tester's eos (5) at step 3.
    expect(batchExpected[1][3]).toBe(5);
    const r = await generate(model, batch, { maxNewTokens: 8 }); // eos 5 and pad 3 from the model config
    expect(r.newTokens[0]).toEqual(batchExpected[0]);
    expect(r.newTokens[1]).toEqual([...batchExpected[1].slice(0, 4), 3, 3, 3, 3]);
    expect(r.newTokens[2]).toEqual(batchExpected[2]);
    expect(r.finishReason).toEqual(['length', 'eos', 'length']);
    expect(r.sequences[1]).toEqual([...batch.inputIds[1], ...r.newTokens[1]]);
  });

  test('the attention mask is inferred from the pad token when not given (transformers rule)', async () => {
    expect(batch.inputIds.map((r) => r.map((t) => (t === 3 ? 0 : 1)))).toEqual(batch.attentionMask);
    const r = await generate(model, { ...batch, attentionMask: undefined }, { maxNewTokens: 8, eosTokenId: null });
    expect(r.newTokens).toEqual(batchExpected);
  });

  test('eos stops a single row; minNewTokens forbids it until reached', async () => {
    const v8 = await openCase('tester', 'video_8');
    const inputs = { inputIds: await v8.rows('input_ids'), pixelValuesVideos: (await v8.tensor('pixel_values_videos')) as tf.Tensor5D };
    const expected = (await v8.rows('generated_ids'))[0];
    await v8.close();
    try {
      const at = expected.indexOf(5);
      const r = await generate(model, inputs, { maxNewTokens: 8 });
      expect(r.newTokens[0]).toEqual(expected.slice(0, at + 1));
      expect(r.finishReason).toEqual(['eos']);
      const m = await generate(model, inputs, { maxNewTokens: 8, minNewTokens: 8 });
      expect(m.newTokens[0]).toHaveLength(8);
      expect(m.newTokens[0][at]).not.toBe(5);
    } finally {
      inputs.pixelValuesVideos.dispose();
    }
  });

  test('a stop string ends the row at the token that completes it', async () => {
    const greedy = await generate(model, textOnly, { maxNewTokens: 8, eosTokenId: null });
    const ids = greedy.newTokens[0];
    const stop = letters.decode(ids.slice(3, 5)).slice(1, 3); // straddles tokens 3 and 4
    const r = await generate(model, textOnly, { maxNewTokens: 8, eosTokenId: null, stopStrings: [stop], tokenizer: letters });
    const first = letters.decode(ids).indexOf(stop); // first occurrence; its last character is in token ⌊(first + 1) / 2⌋
    expect(r.newTokens[0]).toEqual(ids.slice(0, Math.floor((first + 1) / 2) + 1));
    expect(r.finishReason).toEqual(['stop_string']);
  });
});

describe('streaming and abort', () => {
  test('onToken and generateStream give the decoded text piece by piece', async () => {
    const pieces: string[] = [];
    const r = await generate(model, textOnly, { maxNewTokens: 6, eosTokenId: null, tokenizer: letters, onToken: (e) => pieces.push(e.text[0]) });
    expect(pieces.join('')).toBe(letters.decode(r.newTokens[0]));
    const stream = generateStream(model, textOnly, { maxNewTokens: 6, eosTokenId: null, tokenizer: letters });
    const streamed: string[] = [];
    for await (const ev of stream) streamed.push(ev.text[0]);
    expect(streamed).toEqual(pieces);
    expect((await stream.result).newTokens).toEqual(r.newTokens);
  });

  test('an AbortSignal stops cleanly: aborted result, tensors freed', async () => {
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const r = await generate(model, batch, {
      maxNewTokens: 50,
      eosTokenId: null,
      signal: controller.signal,
      onToken: (e) => e.step === 2 && controller.abort(),
    });
    expect(r.aborted).toBe(true);
    expect(r.newTokens.map((t) => t.length)).toEqual([3, 3, 3]);
    expect(r.finishReason).toEqual(['aborted', 'aborted', 'aborted']);
    expect(tf.memory().numTensors).toBe(before);
    const pre = await generate(model, textOnly, { signal: AbortSignal.abort() });
    expect(pre).toMatchObject({ aborted: true, newTokens: [[]], finishReason: ['aborted'] });
  });

  test('leaving a generateStream loop early aborts generation', async () => {
    const before = tf.memory().numTensors;
    const stream = generateStream(model, textOnly, { maxNewTokens: 100, eosTokenId: null });
    let n = 0;
    for await (const ev of stream) if (++n === 2 || ev.step > 10) break;
    const r = await stream.result;
    expect(r.aborted).toBe(true);
    expect(r.newTokens[0].length).toBeLessThan(100);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('sampling', () => {
  const opts: GenerateOptions = { maxNewTokens: 16, eosTokenId: null, doSample: true, temperature: 1.5, topK: 0 };

  test('the same seed repeats a run; the reported seed of an unseeded run repeats it too', async () => {
    const a = await generate(model, textOnly, { ...opts, seed: 1234 });
    const b = await generate(model, textOnly, { ...opts, seed: 1234 });
    const c = await generate(model, textOnly, { ...opts, seed: 99 });
    expect(a.seed).toBe(1234);
    expect(b.newTokens).toEqual(a.newTokens);
    expect(c.newTokens).not.toEqual(a.newTokens);
    const free = await generate(model, textOnly, opts);
    expect(typeof free.seed).toBe('number');
    expect((await generate(model, textOnly, { ...opts, seed: free.seed! })).newTokens).toEqual(free.newTokens);
  });

  test('topK 1 sampling is greedy; greedy results report no seed', async () => {
    const greedy = await generate(model, textOnly, { maxNewTokens: 8, eosTokenId: null });
    expect(greedy.seed).toBeNull();
    expect((await generate(model, textOnly, { ...opts, maxNewTokens: 8, topK: 1, seed: 5 })).newTokens).toEqual(greedy.newTokens);
  });

  test('a repetition penalty changes greedy output', async () => {
    const plain = await generate(model, textOnly, { maxNewTokens: 12, eosTokenId: null });
    const penalised = await generate(model, textOnly, { maxNewTokens: 12, eosTokenId: null, repetitionPenalty: 5 });
    expect(penalised.newTokens).not.toEqual(plain.newTokens);
  });
});

describe('model integration', () => {
  test('a forward hook on a decoder layer fires at every step and can change the result', async () => {
    const layer = model.model.language_model.layers.items[0];
    let calls = 0;
    const counter = layer.registerForwardHook(() => void calls++);
    const baseline = await generate(model, textOnly, { maxNewTokens: 6, eosTokenId: null });
    counter.remove();
    expect(calls).toBe(6); // prefill + 5 decode steps
    const zero = layer.mlp.registerForwardHook((_m, _args, out) => {
      const z = tf.zerosLike(out as tf.Tensor);
      (out as tf.Tensor).dispose();
      return z;
    });
    const before = tf.memory().numTensors;
    const zeroed = await generate(model, textOnly, { maxNewTokens: 6, eosTokenId: null });
    zero.remove();
    expect(tf.memory().numTensors).toBe(before);
    expect(zeroed.newTokens).not.toEqual(baseline.newTokens);
    expect((await generate(model, textOnly, { maxNewTokens: 6, eosTokenId: null })).newTokens).toEqual(baseline.newTokens);
  });

  test('the vision tower runs once, at prefill; timings are filled', async () => {
    let towerCalls = 0;
    const h = model.model.image_tower.registerForwardHook(() => void towerCalls++);
    const r = await generate(model, imageOnly, { maxNewTokens: 5, eosTokenId: null });
    h.remove();
    expect(towerCalls).toBe(1);
    const L = (imageOnly.inputIds as number[][])[0].length;
    expect(r.timings.prefillTokens).toBe(L);
    expect(r.timings.decodeTokens).toBe(4);
    expect(r.timings.visionMs).toBeGreaterThan(0);
    expect(r.timings.prefillMs).toBeGreaterThan(0);
    expect(r.timings.decodeMs).toBeGreaterThan(0);
  });
});

describe('tensor memory', () => {
  test('1000 decode steps: the count only grows by cache blocks, and returns to the start', async () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const blockSize = 128; // fewer blocks, fewer small ops per step: keeps the test fast on the cpu backend
    const r = await generate(model, textOnly, {
      maxNewTokens: 1001,
      eosTokenId: null,
      cacheBlockSize: blockSize,
      onToken: () => counts.push(tf.memory().numTensors),
    });
    expect(r.newTokens[0]).toHaveLength(1001);
    expect(tf.memory().numTensors).toBe(before);
    const layers = model.config.text_config.num_hidden_layers;
    const L = (textOnly.inputIds as number[][])[0].length;
    counts.forEach((n, step) => {
      const blocks = Math.ceil((L + step + 1) / blockSize); // frozen blocks + the open one, per layer, for keys and values
      expect(n - before).toBeLessThanOrEqual(2 * layers * blocks);
    });
  });

  test('20 generate calls leave no tensors behind', async () => {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) await generate(model, i % 2 ? textOnly : imageOnly, { maxNewTokens: 3, eosTokenId: null });
    expect(tf.memory().numTensors).toBe(before);
  });
});
