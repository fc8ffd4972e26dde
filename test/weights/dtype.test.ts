/**
 * Decoders and encoders against torch: the fixtures hold raw values written by the Python `safetensors`
 * library and torch's own `.float()`, `.half()` and `.bfloat16()` of them (reference/gen_safetensors.py).
 */
import * as path from 'path';
import { SafetensorsError } from '../../src/errors';
import {
  DTYPE_SIZES,
  decodeBFloat16,
  decodeFloat,
  decodeFloat16,
  decodeInt32,
  encodeBFloat16,
  encodeFloat16,
} from '../../src/weights/dtype';
import { SafetensorsFile } from '../../src/weights/safetensors';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'safetensors');

/** Indices where `actual` differs from `expected` bit for bit; NaN only needs to meet NaN. */
function floatMismatches(actual: Float32Array, expected: Float32Array): number[] {
  expect(actual.length).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const bad: number[] = [];
  for (let i = 0; i < e.length; i++) {
    const same = Number.isNaN(expected[i]) ? Number.isNaN(actual[i]) : a[i] === e[i];
    if (!same) bad.push(i);
  }
  return bad;
}

/** Same, for 16-bit encodings: NaN patterns only need to be NaN. */
function halfMismatches(actual: Uint16Array, expected: Uint16Array, isNaN: (h: number) => boolean): number[] {
  expect(actual.length).toBe(expected.length);
  const bad: number[] = [];
  for (let i = 0; i < expected.length; i++) {
    const same = isNaN(expected[i]) ? isNaN(actual[i]) : actual[i] === expected[i];
    if (!same) bad.push(i);
  }
  return bad;
}

const isHalfNaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBFloatNaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

describe('dtype decoders vs torch .float()', () => {
  let values: SafetensorsFile;
  let expected: SafetensorsFile;
  beforeAll(async () => {
    values = await SafetensorsFile.open(path.join(FIXTURES, 'dtypes.safetensors'));
    expected = await SafetensorsFile.open(path.join(FIXTURES, 'expected.safetensors'));
  });
  afterAll(async () => {
    await values.close();
    await expected.close();
  });

  // Exact: every F16, BF16 and F8 value is representable in float32, and F64 -> F32 is a single
  // round-to-nearest-even in both torch and JS.
  it.each(['f16', 'bf16', 'f64', 'f8_e4m3', 'f8_e5m2', 'f32', 'f32_scalar'])('%s decodes bit-exactly', async (name) => {
    const { dtype } = values.info(name);
    const actual = decodeFloat(dtype, await values.readBytes(name));
    expect(floatMismatches(actual, await expected.readFloat32(name))).toEqual([]);
  });

  it('the fixture covers subnormals, infinities, NaN and -0', async () => {
    const f16 = await expected.readFloat32('f16');
    expect(f16.some((v) => v !== 0 && Math.abs(v) < 2 ** -14)).toBe(true);
    expect(f16.includes(Infinity) && f16.includes(-Infinity) && f16.some(Number.isNaN)).toBe(true);
    expect(f16.some((v) => Object.is(v, -0))).toBe(true);
  });

  it('decodes from an unaligned buffer', async () => {
    const raw = await values.readBytes('f16');
    const shifted = new Uint8Array(raw.length + 1).subarray(1);
    shifted.set(raw);
    expect(floatMismatches(decodeFloat16(shifted), await expected.readFloat32('f16'))).toEqual([]);
  });

  it('refuses to mix float and integer decoding', () => {
    expect(() => decodeFloat('I32', new Uint8Array(4))).toThrow(SafetensorsError);
    expect(() => decodeInt32('F32', new Uint8Array(4))).toThrow(SafetensorsError);
    expect(() => decodeFloat16(new Uint8Array(3))).toThrow(/multiple of 2/);
  });
});

describe('integer decoding', () => {
  it('names the tensor when a 64-bit value does not fit in int32', () => {
    const bytes = new Uint8Array(new BigInt64Array([1n, 2n ** 31n]).buffer);
    expect(() => decodeInt32('I64', bytes, { file: 'f.safetensors', tensor: 'ids' })).toThrow(
      /f\.safetensors \[ids\]: I64 element 1 is 2147483648/,
    );
  });

  it('keeps negative I64 values and maps BOOL bytes to 0/1', () => {
    const bytes = new Uint8Array(new BigInt64Array([-(2n ** 31n), -1n, 7n]).buffer);
    expect([...decodeInt32('I64', bytes)]).toEqual([-(2 ** 31), -1, 7]);
    expect([...decodeInt32('BOOL', new Uint8Array([0, 1, 2]))]).toEqual([0, 1, 1]);
  });
});

describe('dtype encoders vs torch .half() / .bfloat16()', () => {
  let file: SafetensorsFile;
  let src: Float32Array;
  beforeAll(async () => {
    file = await SafetensorsFile.open(path.join(FIXTURES, 'encode.safetensors'));
    src = await file.readFloat32('src');
  });
  afterAll(() => file.close());

  const halves = async (name: string): Promise<Uint16Array> => {
    const bytes = await file.readBytes(name);
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  };

  // Exact: both sides round to nearest, ties to even; the inputs include many exact ties.
  it('float16 encoding matches torch bit for bit', async () => {
    expect(halfMismatches(encodeFloat16(src), await halves('f16'), isHalfNaN)).toEqual([]);
  });

  it('bfloat16 encoding matches torch bit for bit', async () => {
    expect(halfMismatches(encodeBFloat16(src), await halves('bf16'), isBFloatNaN)).toEqual([]);
  });
});

describe('16-bit round trips over every bit pattern', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const allBytes = new Uint8Array(all.buffer);

  it('float16: decode then encode gives the same bits (NaN stays NaN)', () => {
    expect(halfMismatches(encodeFloat16(decodeFloat16(allBytes)), all, isHalfNaN)).toEqual([]);
  });

  it('bfloat16: decode then encode gives the same bits (NaN stays NaN)', () => {
    expect(halfMismatches(encodeBFloat16(decodeBFloat16(allBytes)), all, isBFloatNaN)).toEqual([]);
  });
});

it('dtype sizes agree with the tensors the Python library wrote', async () => {
  const file = await SafetensorsFile.open(path.join(FIXTURES, 'dtypes.safetensors'));
  try {
    const seen = new Set<string>();
    for (const name of file.keys()) {
      const { dtype, shape, byteLength } = file.info(name);
      const count = shape.reduce((a, b) => a * b, 1);
      if (count > 0) expect(byteLength / count).toBe(DTYPE_SIZES[dtype]);
      seen.add(dtype);
    }
    expect([...seen].sort()).toEqual(Object.keys(DTYPE_SIZES).sort());
  } finally {
    await file.close();
  }
});
