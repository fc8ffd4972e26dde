/**
 * Logits processors against transformers 5.24 (reference/gen_generation.py → test/fixtures/generation/
 * processors.safetensors), the seeded RNG and categorical sampling.
 *
 * Tolerance 1e-6 absolute on processed scores: kept scores are copied or go through one float32 multiply or
 * divide of values of size ≤ 10, done as torch does it (scalar cast to float32), so at most 1 ulp (≈ 1e-6)
 * apart (seen: 0); removed ones must be -Infinity on both sides.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {
  Rng,
  applyMinNewTokens,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  sampleIndex,
  selectToken,
  softmax,
} from '../../src/generation/sampling';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { FIXTURES } from '../helpers/fixtures';

const TOL = 1e-6; // see header
type Step = [string, Record<string, number | number[]>];

function applyStep(row: Float32Array, [name, p]: Step, ids: number[], padding: number): void {
  if (name === 'temperature') applyTemperature(row, p.temperature as number);
  else if (name === 'top_k') applyTopK(row, p.top_k as number);
  else if (name === 'top_p') applyTopP(row, p.top_p as number);
  else if (name === 'repetition_penalty') applyRepetitionPenalty(row, ids.slice(padding), p.penalty as number);
  else if (name === 'min_new_tokens') applyMinNewTokens(row, p.eos as number[], ids.length - (p.prompt_length as number), p.min_new_tokens as number);
  else throw new Error(`unknown processor ${name}`);
}

describe('logits processors match transformers', () => {
  let file: SafetensorsFile;
  let cases: Record<string, { input: string; steps: Step[] }>;
  const rows = async (name: string) => {
    const t = await file.readTensor(name);
    const out = t.arraySync() as number[][];
    t.dispose();
    return out;
  };
  beforeAll(async () => {
    file = await SafetensorsFile.open(path.join(FIXTURES, 'generation', 'processors.safetensors'));
    cases = JSON.parse(file.metadata.cases);
  });
  afterAll(() => file?.close());

  test('fixture has the expected cases', () => {
    expect(Object.keys(cases).sort()).toEqual(expect.arrayContaining(['chain', 'repetition_1.3', 'temperature_0.7', 'top_k_5_ties', 'top_p_0.9']));
  });

  test.each([
    'temperature_0.7', 'temperature_1.5', 'top_k_1', 'top_k_5', 'top_k_100', 'top_k_5_ties', 'top_p_0.05', 'top_p_0.5',
    'top_p_0.9', 'repetition_1.3', 'repetition_0.7', 'min_new_tokens', 'min_new_tokens_reached', 'chain',
  ])('%s', async (name) => {
    const spec = cases[name];
    const input = await rows(spec.input);
    const expected = await rows(`out.${name}`);
    const ids = await rows('input_ids');
    const padding = (await file.readTensor('padding')).arraySync() as number[];
    let removed = 0;
    input.forEach((r, b) => {
      const row = Float32Array.from(r);
      for (const step of spec.steps) applyStep(row, step, ids[b], padding[b]);
      row.forEach((v, i) => {
        const e = expected[b][i];
        if (e === -Infinity) {
          expect(v).toBe(-Infinity);
          removed++;
        } else if (!(Math.abs(v - e) <= TOL)) {
          throw new Error(`${name} row ${b} id ${i}: ${v} vs Python ${e}`);
        }
      });
    });
    if (name.startsWith('top_') && name !== 'top_k_100') expect(removed).toBeGreaterThan(0); // k ≥ vocab keeps all
  });
});

describe('selection', () => {
  test('argmax takes the first of equal maxima (torch.argmax)', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });

  test('softmax gives 0 to -Infinity and sums to 1', () => {
    const p = softmax([0, -Infinity, Math.log(3)]);
    expect(p[1]).toBe(0);
    expect(p[2]).toBeCloseTo(0.75, 12);
  });

  test('the same seed gives the same stream; another seed another one', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 100 }, () => a.nextUint32());
    expect(Array.from({ length: 100 }, () => b.nextUint32())).toEqual(sa);
    expect(Array.from({ length: 100 }, () => c.nextUint32())).not.toEqual(sa);
  });

  test('nextFloat is uniform in [0, 1)', () => {
    const rng = new Rng(7);
    const n = 20000;
    const xs = Array.from({ length: n }, () => rng.nextFloat());
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / n;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01); // 5σ of the mean of n uniforms is 0.01
  });

  test('sampleIndex follows the softmax frequencies and never picks a removed token', () => {
    const scores = Float32Array.from([Math.log(0.2), -Infinity, Math.log(0.5), Math.log(0.3)]);
    const rng = new Rng(1);
    const counts = [0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleIndex(scores, rng)]++;
    expect(counts[1]).toBe(0);
    [0.2, 0, 0.5, 0.3].forEach((p, i) => expect(Math.abs(counts[i] / n - p)).toBeLessThan(0.02)); // ≥ 5σ for n = 20000
  });

  test('selectToken: greedy ignores the sampling warpers; topK 1 sampling equals greedy', () => {
    const base = Float32Array.from([0.1, 2.5, -1, 2.4]);
    const common = { temperature: 0.5, topK: 1, topP: 0.3, repetitionPenalty: 1, minNewTokens: 0, eosTokenIds: [] };
    expect(selectToken(base.slice(), [], 0, { ...common, doSample: false }, null)).toBe(1);
    const rng = new Rng(3);
    for (let i = 0; i < 20; i++) expect(selectToken(base.slice(), [], 0, { ...common, doSample: true }, rng)).toBe(1);
  });

  test('selectToken applies the repetition penalty and min-new-tokens before choosing', () => {
    const s = { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 2, minNewTokens: 0, eosTokenIds: [] };
    expect(selectToken(Float32Array.from([1, 1.5, 0]), [1], 0, s, null)).toBe(0); // 1.5 / 2 < 1
    const m = { ...s, repetitionPenalty: 1, minNewTokens: 2, eosTokenIds: [1] };
    expect(selectToken(Float32Array.from([1, 1.5, 0]), [], 1, m, null)).toBe(0);
    expect(selectToken(Float32Array.from([1, 1.5, 0]), [], 2, m, null)).toBe(1);
  });

  test('a bad seed is an InputError naming seed', () => {
    expect(() => new Rng(-1)).toThrow(/seed/);
    expect(() => new Rng(1.5)).toThrow(expect.objectContaining({ name: 'InputError', argument: 'seed' }));
  });

  test('no tensors are involved', () => {
    const before = tf.memory().numTensors;
    applyTopP(Float32Array.from([1, 2, 3]), 0.5);
    expect(tf.memory().numTensors).toBe(before);
  });
});
