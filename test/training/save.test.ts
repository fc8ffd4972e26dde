/**
 * savePretrained: the layout transformers 5.24 save_pretrained writes. The fixtures' model.safetensors
 * files were written by Python's save_pretrained (reference/gen_models.py), so a model loaded from them
 * and saved again must give the same bytes; sharded saves must reload with identical logits.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, WeightsError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { mergeLora } from '../../src/training/lora';
import { loadLoraAdapter, parseSize, savePretrained } from '../../src/training/save';
import { INDEX_FILE } from '../../src/weights/checkpoint';
import { diff, modelDir } from '../helpers/fixtures';
import { Batch, PEFT_ADAPTER, REGENERATE, TESTER, TS_SAVED_MODEL, batchLogits, loadBatch, openTraining } from './training_fixtures';

let batch: Batch;
let tmp: string;
beforeAll(async () => {
  batch = await loadBatch('A');
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'save-test-'));
});
afterAll(async () => {
  batch?.dispose();
  await fsp.rm(tmp, { recursive: true, force: true });
});

const readJson = async (file: string) => JSON.parse(await fsp.readFile(file, 'utf8'));

test.each([
  ['tester', 'float32'],
  ['faithful', 'float32'],
  ['faithful-bf16', 'bfloat16'],
  ['faithful-fp16', 'float16'],
  // default dtype 'auto': 16-bit weights kept as stored save back in their own format
  ['faithful-bf16', 'auto'],
  ['faithful-fp16', 'auto'],
  ['tester', 'auto'],
] as const)('%s saved as %s is byte-identical to Python save_pretrained\'s model.safetensors', async (name, dtype) => {
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir(name));
  if (name.endsWith('16')) expect(model.lm_head.weight.stored?.format).toBe(name.endsWith('bf16') ? 'bfloat16' : 'float16');
  const out = path.join(tmp, `${name}-${dtype}`);
  const result = await savePretrained(model, out, dtype === 'auto' ? {} : { dtype });
  model.dispose();
  expect(result.files.sort()).toEqual(['config.json', 'model.safetensors']);
  const [ours, theirs] = await Promise.all([fsp.readFile(path.join(out, 'model.safetensors')), fsp.readFile(path.join(modelDir(name), 'model.safetensors'))]);
  expect(ours.length).toBe(theirs.length);
  expect(ours.equals(theirs)).toBe(true);
  // config.json: the original object, unknown fields included, written as Python writes it (1.0 stays 1.0)
  const [configOurs, configTheirs] = await Promise.all([fsp.readFile(path.join(out, 'config.json'), 'utf8'), fsp.readFile(path.join(modelDir(name), 'config.json'), 'utf8')]);
  expect(configOurs).toBe(configTheirs);
});

test('sharded save: index as transformers writes it, reload gives identical logits, stale files removed', async () => {
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  const before = batchLogits(model, batch);
  const out = path.join(tmp, 'sharded');
  await savePretrained(model, out); // a single file first: re-saving sharded must remove it
  const { files, weightMap } = await savePretrained(model, out, { maxShardSize: '60KB' });
  model.dispose();
  const shards = files.filter((f) => f.startsWith('model-'));
  expect(shards.length).toBeGreaterThanOrEqual(4); // 212 KB of float32 in ≤ 60 KB pieces
  shards.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
  expect(files).toEqual([...shards, INDEX_FILE, 'config.json']);
  expect((await fsp.readdir(out)).sort()).toEqual([...files].sort());
  const index = await readJson(path.join(out, INDEX_FILE));
  const f = await openTraining('batch');
  const total = Number(f.metadata['parameters.total']); // torch num_parameters()
  await f.close();
  expect(index.metadata).toEqual({ total_parameters: total, total_size: 4 * total });
  expect(index.weight_map).toEqual(weightMap);
  for (const key of ['language_model.model.embed_tokens.weight', 'image_tower.embeddings.patch_embedding.weight', 'language_model.lm_head.weight', 'multi_modal_projector.linear_1.bias']) {
    expect(Object.keys(index.weight_map)).toContain(key);
  }
  for (const file of shards) {
    const header = (await fsp.readFile(path.join(out, file))).readBigUInt64LE(0);
    expect((await fsp.stat(path.join(out, file))).size - 8 - Number(header)).toBeLessThanOrEqual(60_000);
  }

  const reloaded = await VideoLlavaForConditionalGeneration.fromPretrained(out);
  const after = batchLogits(reloaded, batch);
  expect(diff(after, before).abs).toBe(0); // float32 written and read back: the same bits
  reloaded.dispose();
  tf.dispose([before, after]);

  await savePretrained(await VideoLlavaForConditionalGeneration.fromPretrained(out), out); // back to one file
  expect((await fsp.readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
});

test('the tester with the PEFT adapter merged: saved, reloaded, same logits (and the fixture for Python)', async () => {
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  await loadLoraAdapter(model, PEFT_ADAPTER);
  await expect(savePretrained(model, path.join(tmp, 'unmerged'))).rejects.toThrow(/unmerged LoRA adapter/);
  mergeLora(model);
  const merged = batchLogits(model, batch);
  const out = path.join(tmp, 'merged');
  await savePretrained(model, out, { maxShardSize: '100KB' });
  if (REGENERATE) await savePretrained(model, TS_SAVED_MODEL, { maxShardSize: '100KB' }); // checked by gen_training.py
  model.dispose();
  const reloaded = await VideoLlavaForConditionalGeneration.fromPretrained(out);
  const after = batchLogits(reloaded, batch);
  expect(diff(after, merged).abs).toBe(0);
  reloaded.dispose();
  tf.dispose([merged, after]);
});

test('a model built in code (no config.json to copy) saves a config Python and we can load', async () => {
  const source = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  const model = new VideoLlavaForConditionalGeneration(source.config);
  for (const [name, p] of model.namedParameters()) p.set(source.getParameter(name).checkpointValue());
  const before = batchLogits(source, batch);
  source.dispose();
  const out = path.join(tmp, 'built');
  await savePretrained(model, out);
  model.dispose();
  const config = await readJson(path.join(out, 'config.json'));
  expect(config.model_type).toBe('video_llava');
  expect(config.text_config.model_type).toBe('llama');
  expect(config.vision_config.model_type).toBe('clip_vision_model');
  expect(config.text_config.rope_parameters).toEqual({ rope_type: 'default', rope_theta: 10000 });
  const reloaded = await VideoLlavaForConditionalGeneration.fromPretrained(out);
  const after = batchLogits(reloaded, batch);
  expect(diff(after, before).abs).toBe(0);
  reloaded.dispose();
  tf.dispose([before, after]);
});

test('bad options are typed errors', async () => {
  expect(parseSize('5GB')).toBe(5e9);
  expect(parseSize(' 1.5 mb')).toBe(1_500_000);
  expect(() => parseSize('5 bytes')).toThrow(ConfigError);
  expect(() => parseSize(0)).toThrow(ConfigError);
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
  await expect(savePretrained(model, path.join(tmp, 'x'), { dtype: 'int8' as never })).rejects.toThrow(ConfigError);
  const empty = new VideoLlavaForConditionalGeneration(model.config);
  await expect(savePretrained(empty, path.join(tmp, 'y'))).rejects.toThrow(WeightsError);
  model.dispose();
});
