/**
 * The 4-bit format against bitsandbytes 0.50.2 on CPU (test/fixtures/bnb/quantize_4bit.safetensors, from
 * reference/gen_bnb.py): quantize4bit must give the same packed bytes, block scales, nested scales and offset
 * (exact equality), dequantize4bit the same values as bitsandbytes' dequantize_4bit (exact), for NF4 and FP4,
 * every block size, with and without double quantization, float32 / bfloat16 / float16 weights.
 */
import * as path from 'path';
import { QuantizationError } from '../../src/errors';
import {
  FP4_CODE,
  FourBitState,
  FourBitType,
  NF4_CODE,
  WeightDtype,
  blockScales,
  dequantize4bit,
  dequantize4bitRows,
  dynamicCode,
  packQuantState,
  quantize4bit,
} from '../../src/quantization';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { BNB, bytesOf, firstDifference } from './helpers';

interface CaseMeta {
  input: string;
  dtype: WeightDtype;
  shape: number[];
  quant_type: FourBitType;
  blocksize: number;
  double_quant: boolean;
  quant_state_json: string;
  cpu_dequant_kernel_max_abs_diff: number;
}

let file: SafetensorsFile;
let cases: Array<[string, CaseMeta]>;

beforeAll(async () => {
  file = await SafetensorsFile.open(path.join(BNB, 'quantize_4bit.safetensors'));
  cases = Object.entries(file.metadata)
    .filter(([k]) => /^case\d+$/.test(k))
    .map(([k, v]) => [k, JSON.parse(v) as CaseMeta]);
});
afterAll(() => file.close());

const f32 = (name: string) => file.readFloat32(name);
const u8 = async (name: string) => new Uint8Array(await file.readBytes(name));

function quantizeCase(meta: CaseMeta, input: Float32Array): FourBitState {
  return quantize4bit(input, meta.shape, {
    quantType: meta.quant_type,
    blockSize: meta.blocksize,
    doubleQuant: meta.double_quant,
    dtype: meta.dtype,
  });
}

describe('code tables', () => {
  test('NF4, FP4 and the dynamic map equal bitsandbytes tables bit for bit', async () => {
    expect(bytesOf(NF4_CODE).equals(bytesOf(await f32('nf4_code')))).toBe(true);
    expect(bytesOf(FP4_CODE).equals(bytesOf(await f32('fp4_code')))).toBe(true);
    expect(bytesOf(dynamicCode()).equals(bytesOf(await f32('dynamic_map')))).toBe(true);
  });
});

describe('quantize4bit is bit-identical to bitsandbytes.functional.quantize_4bit (CPU)', () => {
  test('the fixture has cases of every block size, both types, all dtypes, double quant on and off', () => {
    const metas = cases.map(([, m]) => m);
    expect(new Set(metas.map((m) => m.blocksize))).toEqual(new Set([32, 64, 128, 256, 512, 1024, 2048, 4096]));
    expect(new Set(metas.map((m) => m.quant_type))).toEqual(new Set(['nf4', 'fp4']));
    expect(new Set(metas.map((m) => m.dtype))).toEqual(new Set(['float32', 'bfloat16', 'float16']));
    expect(new Set(metas.map((m) => m.double_quant))).toEqual(new Set([true, false]));
    expect(cases.length).toBeGreaterThan(50);
  });

  test('packed bytes, absmax, nested absmax, offset and the packed quant-state JSON of every case', async () => {
    const failures: string[] = [];
    for (const [id, meta] of cases) {
      const input = await f32(`input.${meta.input}`);
      const state = quantizeCase(meta, input);
      const label = `${id} (${meta.input} ${meta.quant_type} bs${meta.blocksize} dq=${meta.double_quant} ${meta.dtype})`;
      if (!bytesOf(state.packed).equals(Buffer.from(await u8(`${id}.packed`)))) failures.push(`${label}: packed`);
      if (state.nested) {
        if (!bytesOf(state.absmax).equals(Buffer.from(await u8(`${id}.absmax`)))) failures.push(`${label}: absmax codes`);
        if (!bytesOf(state.nested.absmax).equals(bytesOf(await f32(`${id}.nested_absmax`)))) failures.push(`${label}: nested_absmax`);
        const offset = (await f32(`${id}.offset`))[0];
        if (state.nested.offset !== offset) failures.push(`${label}: offset ${state.nested.offset} vs ${offset}`);
      } else if (!bytesOf(state.absmax).equals(bytesOf(await f32(`${id}.absmax`)))) {
        failures.push(`${label}: absmax`);
      }
      const json = Buffer.from(packQuantState(state)).toString('utf8');
      if (json !== meta.quant_state_json) failures.push(`${label}: quant state JSON ${json} vs ${meta.quant_state_json}`);
    }
    expect(failures).toEqual([]);
  });

  test('double-quantized block scales rebuild exactly as bitsandbytes rebuilds them', async () => {
    for (const [id, meta] of cases.filter(([, m]) => m.double_quant)) {
      const state = quantizeCase(meta, await f32(`input.${meta.input}`));
      expect(firstDifference(blockScales(state), await f32(`${id}.scales`))).toBe(-1);
    }
  });
});

describe('dequantize4bit equals bitsandbytes dequantize_4bit', () => {
  test('every stored case, exactly (float32 product, then rounding to the weight dtype)', async () => {
    let checked = 0;
    for (const [id, meta] of cases) {
      if (!file.has(`${id}.dequant`)) continue;
      const state = quantizeCase(meta, await f32(`input.${meta.input}`));
      const expected = await f32(`${id}.dequant`);
      expect([id, firstDifference(dequantize4bit(state), expected)]).toEqual([id, -1]);
      checked++;
    }
    expect(checked).toBeGreaterThan(40);
  });

  test('bitsandbytes CPU kernel disagrees (its AVX512 per-row scale indexing) only where K % 16 == 0 and K % blocksize != 0', () => {
    for (const [id, meta] of cases) {
      const k = meta.shape[meta.shape.length - 1];
      const rowIndexed = k % 2 === 0 && k % 16 === 0 && meta.blocksize < 2048 && k % meta.blocksize !== 0;
      expect([id, meta.cpu_dequant_kernel_max_abs_diff > 0]).toEqual([id, rowIndexed]);
    }
  });

  test('row panels equal the matching rows of the whole weight', async () => {
    const [id, meta] = cases.find(([, m]) => m.input === 'w37x32' && m.double_quant)!;
    const state = quantizeCase(meta, await f32(`input.${meta.input}`));
    const whole = dequantize4bit(state);
    const scales = blockScales(state);
    const k = meta.shape[1];
    for (const [r0, r1] of [[0, 1], [3, 17], [30, 37], [5, 5]]) {
      const panel = dequantize4bitRows(state, r0, r1, scales);
      expect([id, r0, firstDifference(panel, whole.subarray(r0 * k, r1 * k))]).toEqual([id, r0, -1]);
    }
    expect(() => dequantize4bitRows(state, 30, 38)).toThrow(QuantizationError);
  });
});

describe('quantize4bit rejects bad input with a QuantizationError naming the tensor', () => {
  const w = new Float32Array(64).fill(0.5);
  test.each([
    ['block size', { blockSize: 48 }, /block size 48/],
    ['quant type', { quantType: 'int4' as FourBitType }, /unknown 4-bit quant type "int4"/],
    ['dtype', { dtype: 'float64' as WeightDtype }, /dtype "float64"/],
  ])('%s', (_label, opts, message) => {
    expect(() => quantize4bit(w, [8, 8], { name: 'x.weight', ...opts })).toThrow(message);
    expect(() => quantize4bit(w, [8, 8], { name: 'x.weight', ...opts })).toThrow(QuantizationError);
  });
  test('length, shape, non-finite values, values outside the declared dtype', () => {
    expect(() => quantize4bit(w, [8, 9], { name: 'x.weight' })).toThrow(/x.weight: has 64 values but shape \[8, 9\] needs 72/);
    expect(() => quantize4bit(w, [8, -8], { name: 'x.weight' })).toThrow(/shape must be non-negative integers/);
    expect(() => quantize4bit(new Float32Array(0), [0, 8], { name: 'x.weight' })).toThrow(/empty weight/);
    const bad = w.slice();
    bad[3] = NaN;
    expect(() => quantize4bit(bad, [8, 8], { name: 'x.weight' })).toThrow(/value NaN at index 3 is not finite/);
    const notBf16 = w.slice();
    notBf16[5] = 0.1;
    expect(() => quantize4bit(notBf16, [8, 8], { name: 'x.weight', dtype: 'bfloat16' })).toThrow(/index 5 is not a bfloat16 value/);
  });
});
