/**
 * The 8-bit format against bitsandbytes 0.50.2 on CPU (test/fixtures/bnb/int8.safetensors): Int8Params
 * quantization (float16 rounding, then round(x * (1/absmax) * 127)) must give the same int8 codes and SCB
 * (exact), int8_vectorwise_dequant the same float32 values (exact). The fixture holds a float32 weight, a
 * bfloat16 one with a zero row and float16 rows where x * 127 / absmax would round differently.
 */
import * as path from 'path';
import { QuantizationError } from '../../src/errors';
import { WeightDtype, dequantizeInt8, dequantizeInt8Rows, quantizeInt8 } from '../../src/quantization';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { BNB, bytesOf, firstDifference } from './helpers';

let file: SafetensorsFile;
beforeAll(async () => {
  file = await SafetensorsFile.open(path.join(BNB, 'int8.safetensors'));
});
afterAll(() => file.close());

const CASES = ['w37x32', 'bf16_7x13', 'f16_stress'];

test.each(CASES)('%s: codes, SCB and dequantized values equal bitsandbytes', async (name) => {
  const meta = JSON.parse(file.metadata[name]) as { dtype: WeightDtype; shape: number[] };
  const state = quantizeInt8(await file.readFloat32(`input.${name}`), meta.shape, { dtype: meta.dtype, name });
  expect(bytesOf(state.weight).equals(Buffer.from(await file.readBytes(`${name}.CB`)))).toBe(true);
  expect(bytesOf(state.scb).equals(bytesOf(await file.readFloat32(`${name}.SCB`)))).toBe(true);
  expect(firstDifference(dequantizeInt8(state), await file.readFloat32(`${name}.dequant`))).toBe(-1);
});

test('a zero row stores zeros and SCB 0; row panels equal the whole', async () => {
  const state = quantizeInt8(await file.readFloat32('input.bf16_7x13'), [7, 13], { dtype: 'bfloat16' });
  expect(state.scb[3]).toBe(0);
  expect(Array.from(state.weight.subarray(39, 52))).toEqual(new Array(13).fill(0));
  const whole = dequantizeInt8(state);
  expect(firstDifference(dequantizeInt8Rows(state, 2, 5), whole.subarray(26, 65))).toBe(-1);
});

test('bad input: not 2-D, wrong length, float16 overflow, bad rows', () => {
  expect(() => quantizeInt8(new Float32Array(8), [2, 2, 2], { name: 'm.weight' })).toThrow(/m.weight: 8-bit quantization needs a 2-D weight/);
  expect(() => quantizeInt8(new Float32Array(8), [3, 3], { name: 'm.weight' })).toThrow(/has 8 values but shape \[3, 3\] needs 9/);
  expect(() => quantizeInt8(Float32Array.from([1, 70000]), [1, 2], { name: 'm.weight' })).toThrow(/overflows float16/);
  const state = quantizeInt8(new Float32Array(6).fill(1), [2, 3]);
  expect(() => dequantizeInt8Rows(state, 1, 3)).toThrow(QuantizationError);
  expect(() => dequantizeInt8({ ...state, scb: new Float32Array(3) }, 'm.weight')).toThrow(/m.weight: SCB has 3 entries but the weight has 2 rows/);
});
