/**
 * Checkpoint interop with transformers + bitsandbytes: the tester model quantized by transformers 5.24 /
 * bitsandbytes 0.50.2 and saved by save_pretrained (test/fixtures/bnb/tester-nf4-dq: NF4, double quant;
 * tester-int8: LLM.int8). Every quantized Linear must parse; serializing the parsed states and writing the
 * file again must give the saved file byte for byte; quantizing the original float32 weights here must give
 * the saved tensors byte for byte. Malformed states must fail with a QuantizationError naming the tensor.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { QuantizationError } from '../../src/errors';
import {
  FourBitState,
  RawTensor,
  fourBitFromTensors,
  fourBitToTensors,
  int8FromTensors,
  int8ToTensors,
  quantize4bit,
  quantizeInt8,
  quantizedFormat,
} from '../../src/quantization';
import { SafetensorsFile, TensorEntry, writeSafetensors } from '../../src/weights/safetensors';
import { modelDir } from '../helpers/fixtures';
import { BNB, readAllRaw, under } from './helpers';

const NF4_FILE = path.join(BNB, 'tester-nf4-dq', 'model.safetensors');
const INT8_FILE = path.join(BNB, 'tester-int8', 'model.safetensors');
const ORIGINAL_FILE = path.join(modelDir('tester'), 'model.safetensors');
const NF4_STATE_SUFFIX = '.weight.quant_state.bitsandbytes__nf4';

let nf4: Record<string, RawTensor>;
let int8: Record<string, RawTensor>;
let original: SafetensorsFile;
let tmp: string;

async function readFile(file: string): Promise<Record<string, RawTensor>> {
  const f = await SafetensorsFile.open(file);
  try {
    return await readAllRaw(f);
  } finally {
    await f.close();
  }
}

beforeAll(async () => {
  nf4 = await readFile(NF4_FILE);
  int8 = await readFile(INT8_FILE);
  original = await SafetensorsFile.open(ORIGINAL_FILE);
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bnb-tensors-'));
});
afterAll(async () => {
  await original.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});

function modules(tensors: Record<string, RawTensor>, suffix: string): string[] {
  return Object.keys(tensors)
    .filter((k) => k.endsWith(suffix))
    .map((k) => k.slice(0, -suffix.length))
    .sort();
}

function sameTensor(a: RawTensor, b: RawTensor): boolean {
  return a.dtype === b.dtype && a.shape.join() === b.shape.join() && Buffer.from(a.data).equals(Buffer.from(b.data));
}

/** Rewrites a file: the tensors of quantized modules replaced by `serialize(module)`, the rest copied raw. */
async function rewrite(
  tensors: Record<string, RawTensor>,
  mods: string[],
  serialize: (module: string) => Record<string, RawTensor>,
): Promise<Buffer> {
  const entries: TensorEntry[] = [];
  const owned = new Set<string>();
  for (const m of mods) {
    for (const [k, t] of Object.entries(serialize(m))) {
      entries.push({ name: `${m}.${k}`, dtype: t.dtype, shape: t.shape, data: t.data });
      owned.add(`${m}.${k}`);
    }
  }
  for (const [k, t] of Object.entries(tensors)) {
    if (!owned.has(k)) entries.push({ name: k, dtype: t.dtype, shape: t.shape, data: t.data });
  }
  const out = path.join(tmp, `rewrite-${mods.length}-${entries.length}.safetensors`);
  await writeSafetensors(out, entries, { format: 'pt' });
  return fsp.readFile(out);
}

describe('4-bit (NF4, double quant) checkpoint of transformers + bitsandbytes', () => {
  test('every Linear but lm_head is quantized; each parses', () => {
    const mods = modules(nf4, NF4_STATE_SUFFIX);
    expect(mods).toHaveLength(40); // 2 towers x 2 layers x 6 Linear, projector 2, decoder 2 layers x 7
    expect(mods.some((m) => m.includes('lm_head'))).toBe(false);
    for (const m of mods) {
      const state = fourBitFromTensors(under(nf4, m), { module: m, file: NF4_FILE });
      expect([m, state.quantType, state.blockSize, state.dtype, state.nested?.blockSize]).toEqual([m, 'nf4', 64, 'float32', 256]);
      expect(quantizedFormat(Object.keys(under(nf4, m)))).toBe('4bit');
    }
  });

  test('parse then serialize gives the saved file byte for byte', async () => {
    const mods = modules(nf4, NF4_STATE_SUFFIX);
    const bytes = await rewrite(nf4, mods, (m) => fourBitToTensors(fourBitFromTensors(under(nf4, m), { module: m }), 'uint8', m));
    expect(bytes.equals(await fsp.readFile(NF4_FILE))).toBe(true);
  });

  test('quantize4bit of the original float32 weights gives the saved tensors byte for byte', async () => {
    const mismatches: string[] = [];
    for (const m of modules(nf4, NF4_STATE_SUFFIX)) {
      const info = original.info(`${m}.weight`);
      const state = quantize4bit(await original.readFloat32(`${m}.weight`), info.shape, {
        quantType: 'nf4',
        blockSize: 64,
        doubleQuant: true,
        name: `${m}.weight`,
      });
      for (const [k, t] of Object.entries(fourBitToTensors(state, 'uint8', m))) {
        if (!sameTensor(t, nf4[`${m}.${k}`])) mismatches.push(`${m}.${k}`);
      }
    }
    expect(mismatches).toEqual([]);
  });
});

describe('8-bit checkpoint of transformers + bitsandbytes', () => {
  const mods = () => modules(int8, '.SCB');

  test('every Linear but lm_head is quantized; parse then serialize gives the saved file byte for byte', async () => {
    expect(mods()).toHaveLength(40);
    for (const m of mods()) expect(quantizedFormat(Object.keys(under(int8, m)))).toBe('8bit');
    const bytes = await rewrite(int8, mods(), (m) => int8ToTensors(int8FromTensors(under(int8, m), { module: m }), m));
    expect(bytes.equals(await fsp.readFile(INT8_FILE))).toBe(true);
  });

  test('quantizeInt8 of the original float32 weights gives the saved tensors byte for byte', async () => {
    const mismatches: string[] = [];
    for (const m of mods()) {
      const info = original.info(`${m}.weight`);
      const state = quantizeInt8(await original.readFloat32(`${m}.weight`), info.shape, { name: `${m}.weight` });
      for (const [k, t] of Object.entries(int8ToTensors(state, m))) {
        if (!sameTensor(t, int8[`${m}.${k}`])) mismatches.push(`${m}.${k}`);
      }
    }
    expect(mismatches).toEqual([]);
  });
});

describe('malformed states fail with a QuantizationError naming the tensor', () => {
  const M = 'language_model.model.layers.0.self_attn.q_proj';
  const valid4 = (): Record<string, RawTensor> => ({ ...under(nf4, M) });
  const json = (text: string): RawTensor => {
    const data = new Uint8Array(Buffer.from(text, 'utf8'));
    return { dtype: 'U8', shape: [data.length], data };
  };
  const stateText = (): string => Buffer.from(valid4()['weight.quant_state.bitsandbytes__nf4'].data).toString('utf8');
  const parse4 = (t: Record<string, RawTensor>): FourBitState => fourBitFromTensors(t, { module: M, file: 'model.safetensors' });
  const fails = (fn: () => unknown, tensor: string, message: RegExp): void => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QuantizationError);
    expect((err as QuantizationError).tensor).toBe(`${M}.${tensor}`);
    expect((err as Error).message).toMatch(message);
  };

  test('quant_state: missing, duplicated, bad JSON, unknown type, wrong fields', () => {
    const t = valid4();
    delete t['weight.quant_state.bitsandbytes__nf4'];
    fails(() => parse4(t), 'weight.quant_state', /expected exactly one of .*found none/);
    fails(() => parse4({ ...valid4(), 'weight.quant_state.bitsandbytes__fp4': json('{}') }), 'weight.quant_state', /found .*__nf4, .*__fp4/);
    fails(() => parse4({ ...valid4(), 'weight.quant_state.bitsandbytes__nf4': json('{"quant_type": "nf4", ') }), 'weight.quant_state.bitsandbytes__nf4', /does not hold valid JSON/);
    fails(() => parse4({ ...valid4(), 'weight.quant_state.bitsandbytes__nf4': json('[1, 2]') }), 'weight.quant_state.bitsandbytes__nf4', /JSON object/);
    const withType = (type: string) => ({ ...valid4(), 'weight.quant_state.bitsandbytes__nf4': json(stateText().replace('"nf4"', type)) });
    fails(() => parse4(withType('"int4"')), 'weight.quant_state.bitsandbytes__nf4', /field "quant_type" must be nf4 or fp4, found "int4"/);
    fails(() => parse4(withType('"fp4"')), 'weight.quant_state.bitsandbytes__nf4', /disagrees with its name/);
    const withField = (from: string, to: string) => ({ ...valid4(), 'weight.quant_state.bitsandbytes__nf4': json(stateText().replace(from, to)) });
    fails(() => parse4(withField('"blocksize": 64', '"blocksize": "64"')), 'weight.quant_state.bitsandbytes__nf4', /field "blocksize" must be one of 32, 64/);
    fails(() => parse4(withField('"blocksize": 64', '"blocksize": 48')), 'weight.quant_state.bitsandbytes__nf4', /found 48/);
    fails(() => parse4(withField('"dtype": "float32"', '"dtype": "int8"')), 'weight.quant_state.bitsandbytes__nf4', /field "dtype"/);
    fails(() => parse4(withField('"nested_offset": ', '"nested_offset_": ')), 'weight.quant_state.bitsandbytes__nf4', /field "nested_offset" must be a finite number, found nothing/);
  });

  test('tensors: missing, wrong dtype, wrong sizes', () => {
    const t = valid4();
    delete t['weight.absmax'];
    fails(() => parse4(t), 'weight.absmax', /is missing/);
    const absmax = valid4()['weight.absmax'];
    fails(() => parse4({ ...valid4(), 'weight.absmax': { ...absmax, dtype: 'I8' } }), 'weight.absmax', /dtype I8, expected U8/);
    fails(() => parse4({ ...valid4(), 'weight.absmax': { ...absmax, shape: [15], data: absmax.data.subarray(0, 15) } }), 'weight.absmax', /shape \[15\], expected \[16\]/);
    const w = valid4().weight;
    fails(() => parse4({ ...valid4(), weight: { ...w, shape: [511, 1], data: w.data.subarray(0, 511) } }), 'weight', /holds 511 packed bytes but shape \[32, 32\] needs 512/);
    fails(() => parse4({ ...valid4(), weight: { ...w, shape: [512, 2] } }), 'weight', /has 512 bytes but shape \[512, 2\] of U8 needs 1024/);
    const nested = valid4()['weight.nested_quant_map'];
    fails(() => parse4({ ...valid4(), 'weight.nested_quant_map': { ...nested, shape: [255], data: nested.data.subarray(0, 1020) } }), 'weight.nested_quant_map', /expected \[256\]/);
  });

  test('8-bit: missing SCB, wrong SCB length, unsupported weight_format', () => {
    const valid8 = (): Record<string, RawTensor> => ({ ...under(int8, M) });
    const parse8 = (t: Record<string, RawTensor>) => int8FromTensors(t, { module: M });
    const t = valid8();
    delete t.SCB;
    fails(() => parse8(t), 'SCB', /is missing/);
    const scb = valid8().SCB;
    fails(() => parse8({ ...valid8(), SCB: { ...scb, shape: [31], data: scb.data.subarray(0, 124) } }), 'SCB', /expected \[32\]/);
    fails(() => parse8({ ...valid8(), weight_format: { dtype: 'U8', shape: [], data: Uint8Array.from([1]) } }), 'weight_format', /is col32; only row-major/);
    fails(() => parse8({ ...valid8(), weight: { ...valid8().weight, dtype: 'U8' } }), 'weight', /dtype U8, expected I8/);
  });
});
