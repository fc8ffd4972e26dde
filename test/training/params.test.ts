/**
 * Freezing by name or glob and parameter counts; the counts are Python's (reference/gen_training.py:
 * num_parameters(), the projector's numel, PEFT's get_nb_trainable_parameters / print_trainable_parameters).
 */
import { InputError } from '../../src/errors';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { loadLoraAdapter } from '../../src/training/save';
import { countParameters, freeze, matchesPattern, selectParameters, trainableSummary, unfreeze } from '../../src/training/params';
import { PEFT_ADAPTER, TESTER, openTraining } from './training_fixtures';

let model: VideoLlavaForConditionalGeneration;
let meta: Record<string, string>;
beforeAll(async () => {
  const f = await openTraining('batch');
  meta = { ...f.metadata };
  await f.close();
});
beforeEach(async () => {
  model = await VideoLlavaForConditionalGeneration.fromPretrained(TESTER);
});
afterEach(() => model.dispose());

const trainableNames = () => model.namedParameters().filter(([, p]) => p.trainable).map(([n]) => n);

test('countParameters equals torch num_parameters(); everything trainable after loading', () => {
  expect(countParameters(model)).toBe(Number(meta['parameters.total']));
  expect(countParameters(model, { trainableOnly: true })).toBe(Number(meta['parameters.total']));
});

test('LLaVA stage 1: freeze all, unfreeze the projector by module name', () => {
  expect(freeze(model)).toHaveLength(model.namedParameters().length);
  expect(countParameters(model, { trainableOnly: true })).toBe(0);
  const names = unfreeze(model, 'model.multi_modal_projector');
  expect(names).toEqual([
    'model.multi_modal_projector.linear_1.weight',
    'model.multi_modal_projector.linear_1.bias',
    'model.multi_modal_projector.linear_2.weight',
    'model.multi_modal_projector.linear_2.bias',
  ]);
  expect(countParameters(model, { trainableOnly: true })).toBe(Number(meta['parameters.projector']));
  expect(countParameters(model)).toBe(Number(meta['parameters.total']));
});

test('globs: model.language_model.*, *.q_proj.*, exact names', () => {
  freeze(model, 'model.language_model.*');
  expect(trainableNames().some((n) => n.startsWith('model.language_model.'))).toBe(false);
  expect(trainableNames()).toContain('lm_head.weight');
  unfreeze(model);
  freeze(model);
  const q = unfreeze(model, '*.q_proj.*');
  // 2 decoder layers (weight only) + 2 layers × 2 towers (weight and bias)
  expect(q).toHaveLength(2 + 2 * 2 * 2);
  expect(q.every((n) => n.includes('.q_proj.'))).toBe(true);
  unfreeze(model, ['lm_head.weight', 'model.image_tower.embeddings.class_embedding']);
  expect(trainableNames()).toEqual(expect.arrayContaining(['lm_head.weight', 'model.image_tower.embeddings.class_embedding']));
  expect(trainableNames()).toHaveLength(q.length + 2);
});

test('pattern rules: a module prefix selects its subtree, ? is one character, dots are literal', () => {
  expect(matchesPattern('model.language_model.layers.0.mlp.up_proj.weight', 'model.language_model.layers.0')).toBe(true);
  expect(matchesPattern('model.language_model.layers.10.mlp.up_proj.weight', 'model.language_model.layers.1')).toBe(false);
  expect(matchesPattern('model.language_model.layers.3.self_attn.q_proj.weight', 'model.language_model.layers.?.self_attn.*')).toBe(true);
  expect(matchesPattern('lm_head.weight', 'lm_head?weight')).toBe(true);
  expect(matchesPattern('lm_headXweight', 'lm_head.weight')).toBe(false);
});

test('a pattern that matches nothing is an InputError naming it', () => {
  expect(() => freeze(model, 'model.vision_tower.*')).toThrow(InputError);
  expect(() => selectParameters(model, ['lm_head.weight', 'no.such.thing'])).toThrow(/"no.such.thing" matches no parameter/);
  expect(countParameters(model, { trainableOnly: true })).toBe(Number(meta['parameters.total'])); // nothing changed
});

test('LoRA counts equal PEFT get_nb_trainable_parameters and its printed summary', async () => {
  await loadLoraAdapter(model, PEFT_ADAPTER, { trainable: true });
  expect(countParameters(model, { trainableOnly: true })).toBe(Number(meta['parameters.lora_trainable']));
  expect(countParameters(model)).toBe(Number(meta['parameters.lora_all']));
  expect(trainableSummary(model)).toBe(meta['parameters.lora_summary']);
});
