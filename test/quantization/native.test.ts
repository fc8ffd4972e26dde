/**
 * Products with bitsandbytes-quantized weights on the addon's fused dequantize-and-multiply kernels, every kernel
 * family this CPU has, against the float64 product of the exact dequantization (src/quantization/fourbit.ts and
 * int8.ts, bit-identical to bitsandbytes): both directions (x·Wᵀ, and x·W for gradients), decode and prefill shapes,
 * block sizes that do and do not divide the rows, every original dtype the values round to.
 */
import { ISAS, Isa, NativeAddon, nativeAddon } from '../../src/native/addon';
import { platform } from '../../src/platform';
import { fourBitBounds } from '../../src/quantization/codes';
import { quantize4bit, quantize4bitBFloat16 } from '../../src/quantization/fourbit';
import { quantizeInt8, quantizeInt8BFloat16 } from '../../src/quantization/int8';
import { checkRepresentable, roundToDtype } from '../../src/quantization/weight_dtype';
import { decodeBFloat16 } from '../../src/weights/dtype';
import { FourBitWeight, Int8Weight } from '../../src/quantization/weights';
import { StoredWeight } from '../../src/weights/stored';

const addon = nativeAddon();
const describeAddon = addon ? describe : describe.skip;

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function reference(x: Float32Array, m: number, w: StoredWeight, transposed: boolean): Float64Array {
  const W = w.widenRows(0, w.rows);
  const [inner, outer] = transposed ? [w.rows, w.cols] : [w.cols, w.rows];
  const out = new Float64Array(m * outer);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < outer; j++) {
      let s = 0;
      for (let k = 0; k < inner; k++) s += x[i * inner + k] * (transposed ? W[k * w.cols + j] : W[j * w.cols + k]);
      out[i * outer + j] = s;
    }
  return out;
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let scale = 1e-30;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return d / scale;
}

/** fn's result with the addon hidden: the TypeScript paths. */
function withoutAddon<T>(fn: () => T): T {
  const spy = jest.spyOn(platform, 'nativeAddon').mockReturnValue(null);
  try {
    return fn();
  } finally {
    spy.mockRestore();
  }
}

/** fn's result with the addon's kernel family set to `isa`. */
function atIsa<T>(isa: Isa, fn: () => T): T {
  const a = addon as NativeAddon;
  const before = a.features().isa;
  a.setIsa(isa);
  try {
    return fn();
  } finally {
    a.setIsa(before);
  }
}

/** Every kernel family this CPU has, portable first. */
const familiesHere = (): Isa[] => ISAS.slice(0, ISAS.indexOf((addon as NativeAddon).features().bestIsa) + 1);

/** The message fn throws, or 'no error'. */
function messageOf(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

/** float32 values that are bfloat16 values, as their bfloat16 bits; and back. */
const bitsOf = (v: Float32Array) => new Uint16Array(Uint32Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length), (u) => u >>> 16));
const widen = (bits: Uint16Array) => decodeBFloat16(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));

describeAddon('quantized products on the addon', () => {
  const a = addon as NativeAddon;
  const isas = familiesHere();
  const run = atIsa;

  // [rows, cols, blockSize]: aligned (the vector paths), odd widths and blocks across rows (the element path)
  const SHAPES: Array<[number, number, number]> = [
    [64, 128, 64],
    [96, 256, 32],
    [40, 48, 64],
    [33, 70, 64],
    [70, 96, 256],
  ];
  const weights: Array<[string, StoredWeight]> = [];
  for (const [rows, cols, blockSize] of SHAPES) {
    const w = values(rows * cols, rows + cols);
    for (const quantType of ['nf4', 'fp4'] as const) {
      for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
        // the weight as read from a checkpoint of that dtype; dequantized values are rounded back to it
        const doubleQuant = dtype !== 'float32';
        const state = quantize4bit(roundToDtype(w, dtype), [rows, cols], { quantType, blockSize, doubleQuant, dtype });
        weights.push([`${quantType}/${dtype}${doubleQuant ? '/dq' : ''} [${rows},${cols}] b${blockSize}`, new FourBitWeight(state)]);
      }
    }
    weights.push([`int8 [${rows},${cols}]`, new Int8Weight(quantizeInt8(w, [rows, cols]))]);
  }

  test('every family = the exact dequantization\'s product (float32 compute, both directions, decode and prefill rows)', () => {
    for (const isa of isas) {
      for (const [name, w] of weights) {
        for (const transposed of [false, true]) {
          for (const m of [1, 3, 20]) {
            const inner = transposed ? w.rows : w.cols;
            const outer = transposed ? w.cols : w.rows;
            const x = values(m * inner, m + 5);
            const c = new Float32Array(m * outer);
            run(isa, () => w.nativeProduct(a, x, m, c, transposed));
            // exact products of the dequantized values, float32 accumulation over ≤ 256 terms
            const d = relDiff(c, reference(x, m, w, transposed));
            if (!(d < 1e-5)) throw new Error(`${isa} ${name} transposed=${transposed} m=${m}: ${d}`);
          }
        }
      }
    }
  });

  test('a block whose scale is not a number gives NaN where the exact dequantization does (decode rows)', () => {
    // The decode kernel rounds its per-block tables to bfloat16 on the bit pattern without NaN handling wherever a
    // row pair's scales are all finite; this NaN (every mantissa bit set) is one such rounding would carry into the
    // sign bit, giving -0 instead of NaN.
    const w = new FourBitWeight(quantize4bit(roundToDtype(values(64 * 128, 3), 'bfloat16'), [64, 128], { quantType: 'nf4', blockSize: 64, doubleQuant: false, dtype: 'bfloat16' }));
    const scales = (w as unknown as { scales: Float32Array }).scales;
    new Uint32Array(scales.buffer, scales.byteOffset, scales.length)[5] = 0x7fffffff; // block 5: the second half of row 2
    const x = values(128, 4);
    const ref = reference(x, 1, w, false);
    expect(Number.isNaN(ref[2])).toBe(true);
    for (const isa of isas) {
      const c = new Float32Array(64);
      run(isa, () => w.nativeProduct(a, x, 1, c, false));
      for (let j = 0; j < 64; j++) {
        if (Number.isNaN(ref[j])) expect([isa, j, c[j]]).toEqual([isa, j, NaN]);
        else if (!(Math.abs(c[j] - ref[j]) <= 1e-5 * Math.max(1, Math.abs(ref[j])))) throw new Error(`${isa} row ${j}: ${c[j]} vs ${ref[j]}`);
      }
    }
  });

  test('decode at bfloat16 compute (VDPBF16PS table lookups where the CPU has them) = float32 compute on the rounded row', () => {
    // bfloat16 x times bfloat16 weights is exact in float32: only the order of summation differs.
    for (const [rows, cols, blockSize] of [[64, 128, 64], [37, 512, 128], [6, 4096, 64]] as const) {
      const w = new FourBitWeight(quantize4bit(roundToDtype(values(rows * cols, rows), 'bfloat16'), [rows, cols], { quantType: 'nf4', blockSize, doubleQuant: true, dtype: 'bfloat16' }));
      const x = values(cols, cols);
      for (const isa of isas) {
        const bf16 = new Float32Array(rows);
        const f32 = new Float32Array(rows);
        w.compute = 'bfloat16';
        run(isa, () => w.nativeProduct(a, x, 1, bf16, false));
        w.compute = 'float32';
        run(isa, () => w.nativeProduct(a, roundToDtype(x, 'bfloat16'), 1, f32, false));
        const d = relDiff(bf16, f32);
        if (!(d < 1e-6)) throw new Error(`${isa} [${rows},${cols}] b${blockSize}: ${d}`);
      }
    }
  });

  test('bfloat16 compute: the same as float32 compute on bfloat16-rounded inputs and weights, within rounding', () => {
    for (const isa of isas) {
      for (const [name, w] of weights) {
        const x = values(20 * w.cols, 9);
        const f32 = new Float32Array(20 * w.rows);
        const bf16 = new Float32Array(20 * w.rows);
        w.compute = 'float32';
        run(isa, () => w.nativeProduct(a, x, 20, f32, false));
        w.compute = 'bfloat16';
        run(isa, () => w.nativeProduct(a, x, 20, bf16, false));
        w.compute = 'float32';
        const d = relDiff(bf16, f32);
        // bfloat16 keeps 8 significant bits: a few 1e-3 of the row scale, never more than 2e-2
        if (!(d < 2e-2)) throw new Error(`${isa} ${name}: bf16 compute drift ${d}`);
      }
    }
  });
});

describeAddon('4-bit quantization of whole blocks on the addon', () => {
  /** Values with every edge a block can have: zeros, ±absmax, exact ties on the code midpoints, subnormals. */
  function edgy(n: number, seed: number, type: 'nf4' | 'fp4'): Float32Array {
    const v = values(n, seed);
    const { bounds } = fourBitBounds(type);
    for (let i = 0; i < n; i += 7) v[i] = 0;
    for (let i = 3; i < n; i += 64) v[i] = 1; // the block's absmax, so the bounds below land exactly on midpoints
    for (let i = 5; i < n; i += 11) v[i] = bounds[i % 15];
    for (let i = 9; i < n; i += 97) v[i] = 1e-40;
    return v;
  }

  test('equals the TypeScript quantizer byte for byte (NF4 and FP4, block sizes, partial last blocks, double quantization; each kernel family)', () => {
    const isas = familiesHere();
    let compared = 0;
    for (const isa of isas) {
      for (const quantType of ['nf4', 'fp4'] as const) {
        for (const [n, blockSize] of [[64 * 40, 64], [128 * 33 + 50, 128], [4096 * 3, 4096], [256 * 9 + 1, 256], [32 * 17, 32]] as const) {
          for (const doubleQuant of [false, true]) {
            const w = edgy(n, n + blockSize, quantType);
            const native = atIsa(isa, () => quantize4bit(w, [n], { quantType, blockSize, doubleQuant }));
            const plain = withoutAddon(() => quantize4bit(w, [n], { quantType, blockSize, doubleQuant }));
            expect(Buffer.from(native.packed).equals(Buffer.from(plain.packed))).toBe(true);
            expect(Buffer.from(native.absmax.buffer).equals(Buffer.from(plain.absmax.buffer))).toBe(true);
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(20 * isas.length);
  });
});

describeAddon('4-bit quantization straight from bfloat16 bits on the addon', () => {
  test('the same bytes as quantize4bit of the widened values (NF4 and FP4, block sizes, partial blocks, odd counts; each kernel family)', () => {
    const isas = familiesHere();
    let compared = 0;
    for (const isa of isas) {
      for (const quantType of ['nf4', 'fp4'] as const) {
        for (const [n, blockSize] of [[64 * 40, 64], [128 * 33 + 50, 128], [4096 * 3, 4096], [256 * 9 + 1, 256], [32 * 17 + 3, 32]] as const) {
          const bits = bitsOf(values(n, n + blockSize));
          for (let i = 0; i < n; i += 97) bits[i] = 0x0001; // bfloat16 subnormals
          const widened = widen(bits);
          for (const doubleQuant of [false, true]) {
            const opts = { quantType, blockSize, doubleQuant };
            const fromBits = atIsa(isa, () => quantize4bitBFloat16(bits, [n], opts));
            const plain = quantize4bit(widened, [n], { ...opts, dtype: 'bfloat16' });
            expect(Buffer.from(fromBits.packed).equals(Buffer.from(plain.packed))).toBe(true);
            expect(Buffer.from(fromBits.absmax.buffer).equals(Buffer.from(plain.absmax.buffer))).toBe(true);
            expect(fromBits.dtype).toBe('bfloat16');
            compared++;
          }
        }
      }
    }
    expect(compared).toBe(20 * isas.length);
  });

  test('a value that is not finite is refused as quantize4bit refuses it: the first one, in a whole block or the partial last one', () => {
    const n = 64 * 10 + 20;
    const base = bitsOf(values(n, 5));
    for (const [at, word] of [[70, 0x7f80], [300, 0xffc1], [650, 0xff80]] as const) {
      const bits = base.slice();
      bits[at] = word;
      bits[at + 3] = 0x7f80; // a later one is not the one named
      const fromBits = messageOf(() => quantize4bitBFloat16(bits, [n], { quantType: 'nf4', name: 'w' }));
      expect(fromBits).toBe(messageOf(() => quantize4bit(widen(bits), [n], { quantType: 'nf4', dtype: 'bfloat16', name: 'w' })));
      expect(fromBits).toContain(`at index ${at} is not finite`);
    }
  });
});

describeAddon('8-bit quantization on the addon', () => {
  const plainQuantizeInt8 = (w: Float32Array, shape: [number, number]) => withoutAddon(() => quantizeInt8(w, shape));

  /**
   * Rows of one edge each, in turn (SCB is the float16-rounded absmax, so a row's largest value shows its rounding):
   * plain values; zeros; a float16 tie that rounds to even (down), one that rounds up; float16 subnormals with ties;
   * the float16 maximum and a value rounding down to it; absmax 254 with every integer, so codes land on exact .5 ties.
   */
  function edgy(rows: number, cols: number, seed: number): Float32Array {
    const v = values(rows * cols, seed);
    for (let r = 0; r < rows; r++) {
      const row = v.subarray(r * cols, (r + 1) * cols);
      switch (r % 7) {
        case 1: row.fill(0); break;
        case 2: row[r % cols] = 1 + 2 ** -11; break;
        case 3: row[r % cols] = -(1 + 3 * 2 ** -11); break;
        case 4:
          for (let c = 0; c < cols; c++) row[c] = [3e-6, -(2 ** -25), 1.5 * 2 ** -24, 2.5 * 2 ** -24, 1e-9][c % 5];
          break;
        case 5: row[0] = 65519; row[cols - 1] = -65504; break;
        case 6:
          row[0] = 254;
          for (let c = 1; c < cols; c++) row[c] = (c % 255) - 127;
          break;
      }
    }
    return v;
  }

  test('equals the TypeScript quantizer byte for byte (codes and SCB)', () => {
    let compared = 0;
    for (const [rows, cols] of [[7, 300], [33, 64], [64, 1000], [14, 5]] as const) {
      const w = edgy(rows, cols, rows * cols);
      const native = quantizeInt8(w, [rows, cols]);
      const plain = plainQuantizeInt8(w, [rows, cols]);
      expect(Buffer.from(native.weight.buffer).equals(Buffer.from(plain.weight.buffer))).toBe(true);
      expect(Buffer.from(native.scb.buffer).equals(Buffer.from(plain.scb.buffer))).toBe(true);
      compared++;
    }
    expect(compared).toBe(4);
  });

  test('from bfloat16 bits (a row widened at a time): the same codes, SCB and errors as from the widened values', () => {
    for (const [rows, cols] of [[7, 300], [33, 64], [64, 1000], [14, 5]] as const) {
      // the edges rounded to bfloat16, where the float16 maximum becomes 65536 (an overflow): 65280 instead, the largest
      // bfloat16 below it
      const bits = bitsOf(roundToDtype(edgy(rows, cols, rows * cols), 'bfloat16').map((v) => (Math.abs(v) >= 65504 ? Math.sign(v) * 65280 : v)));
      const fromBits = quantizeInt8BFloat16(bits, [rows, cols]);
      const plain = plainQuantizeInt8(widen(bits), [rows, cols]);
      expect(Buffer.from(fromBits.weight.buffer).equals(Buffer.from(plain.weight.buffer))).toBe(true);
      expect(Buffer.from(fromBits.scb.buffer).equals(Buffer.from(plain.scb.buffer))).toBe(true);
    }
    const base = bitsOf(roundToDtype(values(6 * 40, 3), 'bfloat16'));
    // an overflow (0x47c3: ~1e5, beyond float16) before a value that is not finite, in another row or in the same
    // one: the check for finite values comes first
    const cases = [
      [130, 0x47c3, -1, 'at index 130 overflows float16'],
      [200, 0x7f80, 20, 'at index 200 is not finite'],
      [135, 0xff80, 131, 'at index 135 is not finite'],
    ] as const;
    for (const [at, word, overflowAt, expected] of cases) {
      const bits = base.slice();
      bits[at] = word;
      if (overflowAt >= 0) bits[overflowAt] = 0x47c3;
      const message = messageOf(() => quantizeInt8BFloat16(bits, [6, 40], { name: 'w' }));
      expect(message).toContain(expected);
      expect(message).toBe(messageOf(() => quantizeInt8(widen(bits), [6, 40], { name: 'w', dtype: 'bfloat16' })));
    }
  });

  test('a value that overflows float16 is refused with the same message, naming its first index', () => {
    const w = values(6 * 40, 3);
    w[130] = 65520; // the tie above the float16 maximum rounds to infinity
    w[200] = -1e6;
    const message = /q_proj\.weight: value 65520 at index 130 overflows float16/;
    expect(() => quantizeInt8(w, [6, 40], { name: 'q_proj.weight' })).toThrow(message);
    withoutAddon(() => expect(() => quantizeInt8(w, [6, 40], { name: 'q_proj.weight' })).toThrow(message));
  });
});

describeAddon('weight checks and bfloat16 widening on the addon (large weights)', () => {
  const a = addon as NativeAddon;
  /** Runs fn with the addon seen through an object that counts calls of `method` (the addon's own are read-only). */
  function counting<T>(method: keyof NativeAddon, fn: () => T): { result: T; calls: number } {
    let calls = 0;
    const original = a[method] as (...xs: unknown[]) => unknown;
    const seen = Object.create(a) as NativeAddon;
    Object.defineProperty(seen, method, {
      value: (...args: unknown[]) => {
        calls++;
        return original.apply(a, args);
      },
    });
    const spy = jest.spyOn(platform, 'nativeAddon').mockReturnValue(seen);
    try {
      return { result: fn(), calls };
    } finally {
      spy.mockRestore();
    }
  }
  test('checkRepresentable names the same first bad value as the TypeScript check (float32 and bfloat16)', () => {
    const n = 1 << 17;
    const base = roundToDtype(values(n, 11), 'bfloat16');
    const cases: Array<['float32' | 'bfloat16', number, number]> = [
      ['bfloat16', 70001, 1.0000001192092896], // finite, but not a bfloat16 value
      ['bfloat16', 100, Infinity],
      ['float32', 99999, NaN],
      ['float32', 4100, -Infinity], // in the second chunk of the native scan
    ];
    for (const [dtype, at, v] of cases) {
      const w = base.slice();
      w[at] = v;
      w[at + 4097] = Infinity; // a later bad value, in another chunk, must not be the one named
      const native = counting('firstUnrepresentable', () => messageOf(() => checkRepresentable(w, dtype, 'w')));
      expect(native.calls).toBe(1);
      expect(native.result).toBe(withoutAddon(() => messageOf(() => checkRepresentable(w, dtype, 'w'))));
      expect(native.result).toContain(`at index ${at} `);
    }
    for (const dtype of ['float32', 'bfloat16'] as const) expect(counting('firstUnrepresentable', () => messageOf(() => checkRepresentable(base, dtype, 'w'))).result).toBe('no error');
  });

  test('decodeBFloat16 widens a large tensor on the addon to the same bits', () => {
    const bits = new Uint16Array((1 << 16) + 3);
    for (let i = 0; i < bits.length; i++) bits[i] = (i * 2654435761) >>> 16; // every class: NaN, inf, subnormal, ±0
    const bytes = new Uint8Array(bits.buffer);
    const native = counting('widenRows', () => decodeBFloat16(bytes));
    expect(native.calls).toBe(1);
    const plain = withoutAddon(() => decodeBFloat16(bytes));
    expect(Buffer.from(native.result.buffer).equals(Buffer.from(plain.buffer))).toBe(true);
  });
});
