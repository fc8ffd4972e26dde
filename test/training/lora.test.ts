/**
 * LoRA compatible with PEFT 0.21.2: the adapter of reference/gen_training.py (r=4, alpha=8, the decoder's
 * q_proj and v_proj of the tester, A and B random) is loaded, applied, merged, saved and re-read.
 *
 * Logit tolerances: float32, as the model parity test (seen ≤ 2e-5 there); merged vs adapter differ only
 * in where B·A·scaling is rounded.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, WeightsError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { addLora, loraConfigJson, loraConfigOf, loraParameters, mergeLora, unloadLora } from '../../src/training/lora';
import { countParameters } from '../../src/training/params';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadLoraAdapter, saveLoraAdapter } from '../../src/training/save';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { diff } from '../helpers/fixtures';
import { Batch, PEFT_ADAPTER, REGENERATE, TESTER, TS_SAVED_ADAPTER, batchLogits, loadBatch, openTraining } from './training_fixtures';

const LOGITS_TOL = 1e-4; // float32 logits, as in the model parity test
const MERGE_TOL = 1e-5; // the bound for merged vs adapter logits

let batch: Batch;
let model: VideoLlavaForConditionalGeneration;
let tmp: string;
let expected: { logits: tf.Tensor; merged: tf.Tensor };

beforeAll(async () => {
  batch = await loadBatch('A');
  const f = await openTraining('grads_lora');
  expected = { logits: await f.readTensor('logits'), merged: await f.readTensor('merged_logits') };
  await f.close();
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lora-test-'));
});
afterAll(async () => {
  batch?.dispose();
  tf.dispose([expected?.logits, expected?.merged]);
  await fsp.rm(tmp, { recursive: true, force: true });
});
beforeEach(async () => {
  model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
});
afterEach(() => model.dispose());

function logitsDiff(reference: tf.Tensor): number {
  const logits = batchLogits(model, batch);
  const d = diff(logits, reference).abs;
  logits.dispose();
  return d;
}

test('a PEFT-saved adapter loads and gives PEFT\'s logits; base weights frozen, adapter not trainable by default', async () => {
  const config = await loadLoraAdapter(model, PEFT_ADAPTER);
  expect(config.r).toBe(4);
  expect(loraParameters(model).map(([n]) => n)).toHaveLength(8);
  expect(countParameters(model, { trainableOnly: true })).toBe(0); // PeftModel.from_pretrained(is_trainable=False)
  const d = logitsDiff(expected.logits);
  console.log(`LoRA adapter logits vs peft: max abs diff ${d.toExponential(2)}`);
  expect(d).toBeLessThan(LOGITS_TOL);
});

test('mergeLora: PEFT merge_and_unload logits, within 1e-5 of the adapter logits, adapter gone', async () => {
  await loadLoraAdapter(model, PEFT_ADAPTER);
  const adapterLogits = batchLogits(model, batch);
  mergeLora(model);
  expect(loraParameters(model)).toHaveLength(0);
  expect(loraConfigOf(model)).toBeUndefined();
  expect(model.namedParameters().map(([n]) => n).some((n) => n.includes('lora_'))).toBe(false);
  const merged = batchLogits(model, batch);
  const vsAdapter = diff(merged, adapterLogits).abs;
  const vsPeft = diff(merged, expected.merged).abs;
  console.log(`merged logits: vs our adapter ${vsAdapter.toExponential(2)}, vs peft merged ${vsPeft.toExponential(2)}`);
  expect(vsAdapter).toBeLessThan(MERGE_TOL);
  expect(vsPeft).toBeLessThan(LOGITS_TOL);
  tf.dispose([adapterLogits, merged]);
});

test('saving what was loaded writes PEFT\'s files again: same keys, shapes, values (byte-identical weights)', async () => {
  await loadLoraAdapter(model, PEFT_ADAPTER);
  const out = path.join(tmp, 'roundtrip');
  await saveLoraAdapter(model, out);
  if (REGENERATE) await saveLoraAdapter(model, TS_SAVED_ADAPTER); // checked in Python by gen_training.py

  const [ours, theirs] = [await SafetensorsFile.open(path.join(out, ADAPTER_WEIGHTS_FILE)), await SafetensorsFile.open(path.join(PEFT_ADAPTER, ADAPTER_WEIGHTS_FILE))];
  expect(ours.keys()).toEqual(theirs.keys());
  expect(ours.metadata).toEqual(theirs.metadata);
  for (const key of theirs.keys()) {
    expect(ours.info(key).shape).toEqual(theirs.info(key).shape);
    expect(ours.info(key).dtype).toBe('F32');
    expect(Buffer.from(await ours.readBytes(key)).equals(Buffer.from(await theirs.readBytes(key)))).toBe(true);
  }
  await Promise.all([ours.close(), theirs.close()]);
  const [fileA, fileB] = await Promise.all([fsp.readFile(path.join(out, ADAPTER_WEIGHTS_FILE)), fsp.readFile(path.join(PEFT_ADAPTER, ADAPTER_WEIGHTS_FILE))]);
  expect(fileA.equals(fileB)).toBe(true);
  const configText = (dir: string) => fsp.readFile(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8');
  expect(await configText(out)).toBe(await configText(PEFT_ADAPTER));
});

test('an adapter saved by us reloads with identical logits', async () => {
  await loadLoraAdapter(model, PEFT_ADAPTER);
  const before = batchLogits(model, batch);
  const out = path.join(tmp, 'reload');
  await saveLoraAdapter(model, out);
  unloadLora(model);
  await loadLoraAdapter(model, out);
  const after = batchLogits(model, batch);
  expect(diff(after, before).abs).toBe(0);
  tf.dispose([before, after]);
});

test('addLora writes the adapter_config.json PEFT writes for the same LoraConfig (same bytes)', async () => {
  const options = {
    r: 4,
    lora_alpha: 8,
    target_modules: '.*language_model.*\\.(q_proj|v_proj)',
    lora_dropout: 0,
    init_lora_weights: false,
    base_model_name_or_path: 'test/fixtures/models/tester',
  };
  const theirs = await fsp.readFile(path.join(PEFT_ADAPTER, ADAPTER_CONFIG_FILE), 'utf8');
  expect(loraConfigJson(options)).toEqual(JSON.parse(theirs));
  addLora(model, options, 3);
  const out = path.join(tmp, 'created');
  await saveLoraAdapter(model, out);
  expect(await fsp.readFile(path.join(out, ADAPTER_CONFIG_FILE), 'utf8')).toBe(theirs);
});

test('addLora: PEFT init (B = 0) leaves the logits unchanged; only the adapter is trainable; unload restores', async () => {
  const base = batchLogits(model, batch);
  const config = addLora(model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 7);
  // a list matches by suffix, so the towers' q_proj/v_proj are wrapped too:
  // (2 decoder layers + 2 towers × 2 layers) × {q_proj, v_proj} × {lora_A, lora_B}
  expect(loraParameters(model)).toHaveLength((2 + 2 * 2) * 2 * 2);
  expect(config.raw.init_lora_weights).toBe(true);
  for (const [name, p] of model.namedParameters()) expect(p.trainable).toBe(/lora_[AB]/.test(name));
  const withAdapter = batchLogits(model, batch);
  expect(diff(withAdapter, base).abs).toBe(0); // y + 0: exactly unchanged
  unloadLora(model);
  expect(loraParameters(model)).toHaveLength(0);
  tf.dispose([base, withAdapter]);
});

test('bad adapters are typed errors and leave the model as it was', async () => {
  const before = tf.memory().numTensors;
  const write = async (name: string, config: object, weights = path.join(PEFT_ADAPTER, ADAPTER_WEIGHTS_FILE)) => {
    const dir = path.join(tmp, name);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config));
    await fsp.copyFile(weights, path.join(dir, ADAPTER_WEIGHTS_FILE));
    return dir;
  };
  const good = JSON.parse(await fsp.readFile(path.join(PEFT_ADAPTER, ADAPTER_CONFIG_FILE), 'utf8'));
  await expect(loadLoraAdapter(model, await write('dora', { ...good, use_dora: true }))).rejects.toThrow(ConfigError);
  await expect(loadLoraAdapter(model, await write('ia3', { ...good, peft_type: 'IA3' }))).rejects.toThrow(/only "LORA"/);
  await expect(loadLoraAdapter(model, await write('nomatch', { ...good, target_modules: ['nothing_here'] }))).rejects.toThrow(/matches no module/);
  await expect(loadLoraAdapter(model, await write('embed', { ...good, target_modules: ['embed_tokens'] }))).rejects.toThrow(/Linear layers only/);
  // the file has q_proj and v_proj only: asking for k_proj too leaves 4 weights missing
  await expect(loadLoraAdapter(model, await write('missing', { ...good, target_modules: '.*language_model.*\\.(q_proj|k_proj|v_proj)' }))).rejects.toThrow(WeightsError);
  await expect(loadLoraAdapter(model, await write('rank', { ...good, r: 8 }))).rejects.toThrow(/expected shape \[8, 32\]/);
  await expect(loadLoraAdapter(model, path.join(tmp, 'does-not-exist'))).rejects.toThrow(ConfigError);
  expect(loraParameters(model)).toHaveLength(0);
  expect(loraConfigOf(model)).toBeUndefined();
  expect(countParameters(model, { trainableOnly: true })).toBe(countParameters(model));
  expect(tf.memory().numTensors).toBe(before);
  await loadLoraAdapter(model, PEFT_ADAPTER);
  await expect(loadLoraAdapter(model, PEFT_ADAPTER)).rejects.toThrow(/already has a LoRA adapter/);
});
