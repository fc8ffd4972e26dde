/**
 * The synthetic weight formula against its Python twin (reference/synthetic.py). The fixture
 * test/fixtures/cases/slice7b/synthetic_samples.safetensors holds, for a few checkpoint keys of the 7B-width
 * slice plus some odd names, the first and last values Python produced; its metadata holds the seed, base,
 * scale, shape and the sha256 of the whole tensor (float32 bytes) Python used. Every comparison is bit-exact (tolerance 0): both sides round the same
 * float64 expression to float32 once, so any difference is a bug, not rounding noise.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { InputError } from '../../src/errors';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { syntheticBaseScale, syntheticRange, syntheticSeed, syntheticWeight } from '../../src/weights/synthetic';

const SLICE = path.join(__dirname, '..', 'fixtures', 'cases', 'slice7b');

interface Sample {
  name: string;
  shape: number[];
  seed: number;
  base: number;
  scale: number;
  n: number;
  sha256: string;
}

let file: SafetensorsFile;
let samples: Sample[];

beforeAll(async () => {
  file = await SafetensorsFile.open(path.join(SLICE, 'synthetic_samples.safetensors'));
  samples = Object.entries(file.metadata)
    .filter(([key]) => key !== 'format')
    .map(([name, json]) => ({ name, ...(JSON.parse(json) as Omit<Sample, 'name'>) }));
});

afterAll(async () => {
  await file?.close();
});

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Bit-exact comparison of our values with the stored float32 bytes; returns the first differing index. */
async function firstMismatch(tensor: string, ours: Float32Array): Promise<number> {
  const stored = await file.readBytes(tensor);
  const mine = new Uint8Array(ours.buffer, ours.byteOffset, ours.byteLength);
  if (stored.length !== mine.length) return -2;
  for (let i = 0; i < mine.length; i++) if (stored[i] !== mine[i]) return Math.floor(i / 4);
  return -1;
}

test('the fixture holds samples of norm gains, biases, 1-D, 2-D and 4-D weights and a non-ASCII name', () => {
  expect(samples.length).toBeGreaterThanOrEqual(10);
  expect(samples.some((s) => s.base === 1)).toBe(true);
  expect(samples.some((s) => s.shape.length === 4)).toBe(true);
  expect(samples.some((s) => /[^\x00-\x7f]/.test(s.name))).toBe(true);
});

test('seeds equal Python (FNV-1a 32 of the UTF-8 name)', () => {
  for (const s of samples) expect([s.name, syntheticSeed(s.name)]).toEqual([s.name, s.seed]);
});

test('published FNV-1a 32-bit test vectors', () => {
  // Reference vectors of the FNV specification (draft-eastlake-fnv): "" -> offset basis, "a", "foobar".
  expect(syntheticSeed('')).toBe(0x811c9dc5);
  expect(syntheticSeed('a')).toBe(0xe40c292c);
  expect(syntheticSeed('foobar')).toBe(0xbf9cf968);
});

test('base and scale equal Python exactly', () => {
  for (const s of samples) {
    expect([s.name, syntheticBaseScale(s.name, s.shape)]).toEqual([s.name, { base: s.base, scale: s.scale }]);
  }
});

test('first and last values are bit-identical to Python', async () => {
  for (const s of samples) {
    const total = count(s.shape);
    const head = syntheticRange(s.name, s.shape, 0, s.n);
    const tail = syntheticRange(s.name, s.shape, total - s.n, s.n);
    expect([`${s.name}::head`, await firstMismatch(`${s.name}::head`, head)]).toEqual([`${s.name}::head`, -1]);
    expect([`${s.name}::tail`, await firstMismatch(`${s.name}::tail`, tail)]).toEqual([`${s.name}::tail`, -1]);
  }
});

test('syntheticRange equals the same elements of syntheticWeight', () => {
  for (const s of samples.filter((x) => count(x.shape) <= 1 << 16)) {
    const full = syntheticWeight(s.name, s.shape);
    const mid = Math.floor(full.length / 3);
    const part = syntheticRange(s.name, s.shape, mid, full.length - mid);
    expect(Buffer.from(part.buffer).equals(Buffer.from(full.buffer, mid * 4))).toBe(true);
  }
});

test('every sampled tensor, built whole, has the sha256 of the Python tensor (up to 131M elements, in seconds)', async () => {
  let biggest = 0;
  let biggestMs = 0;
  for (const s of samples) {
    const t0 = Date.now();
    const full = syntheticWeight(s.name, s.shape);
    const ms = Date.now() - t0;
    expect(full.length).toBe(count(s.shape));
    const digest = createHash('sha256').update(new Uint8Array(full.buffer)).digest('hex');
    expect([s.name, digest]).toEqual([s.name, s.sha256]);
    expect(await firstMismatch(`${s.name}::head`, full.subarray(0, s.n))).toBe(-1);
    if (full.length > biggest) [biggest, biggestMs] = [full.length, ms];
  }
  expect(biggest).toBe(32064 * 4096); // embed_tokens / lm_head
  // Generous bound for a shared 2-core machine; measured about 0.45 s under jest.
  expect(biggestMs).toBeLessThan(10000);
});

test('keys.json lists the sampled slice keys with the shapes the samples used', () => {
  const keys = JSON.parse(fs.readFileSync(path.join(SLICE, 'keys.json'), 'utf8')) as {
    keys: Array<{ name: string; shape: number[] }>;
  };
  const shapes = new Map(keys.keys.map((k) => [k.name, k.shape]));
  const sliceSamples = samples.filter((s) => shapes.has(s.name));
  expect(sliceSamples.length).toBeGreaterThanOrEqual(8);
  for (const s of sliceSamples) expect([s.name, shapes.get(s.name)]).toEqual([s.name, s.shape]);
});

test('shapes and ranges it cannot index are refused with InputError', () => {
  expect(() => syntheticWeight('too.big', [65536, 65536])).toThrow(InputError);
  expect(() => syntheticWeight('negative', [-1, 3])).toThrow(InputError);
  expect(() => syntheticWeight('fraction', [1.5])).toThrow(InputError);
  expect(() => syntheticRange('x.weight', [4, 4], 10, 7)).toThrow(InputError);
  expect(() => syntheticRange('x.weight', [4, 4], -1, 2)).toThrow(InputError);
  expect(syntheticWeight('empty.weight', [0, 8]).length).toBe(0);
});
