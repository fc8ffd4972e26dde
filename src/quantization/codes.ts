/**
 * The code tables of bitsandbytes (0.50.2): the 16-entry NF4 and FP4 tables of its 4-bit formats and the
 * 256-entry signed "dynamic" table its blockwise 8-bit quantizer uses for the double-quantized absmax.
 * Every value is a float32, computed the way bitsandbytes computes it, so that tables compare bit for bit.
 */

/** The 4-bit data types of bitsandbytes. */
export type FourBitType = 'nf4' | 'fp4';

export const FOUR_BIT_TYPES: readonly FourBitType[] = ['nf4', 'fp4'];

/**
 * NF4 (NormalFloat4, QLoRA): quantiles of N(0, 1) normalised to [-1, 1], indexed by the 4-bit code
 * (sorted). The decimal values are those bitsandbytes hard-codes in `get_4bit_type("nf4")`.
 */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * FP4 (1 sign, 2 exponent, 1 mantissa bit, exponent bias 2) in bit-pattern order, divided by its largest
 * magnitude 12 in float32 as `get_4bit_type("fp4")` does. Code 8 is +0 (bitsandbytes writes it as the
 * Python integer `-0`).
 */
export const FP4_CODE: Float32Array = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => Math.fround(v / 12)),
);

export function fourBitCode(type: FourBitType): Float32Array {
  return type === 'nf4' ? NF4_CODE : FP4_CODE;
}

/**
 * The code order `torch.argsort(code)` gives on CPU: value order, with the two zeros of FP4 as code 0 then
 * code 8. Quantization finds the rank of a value among the sorted codes and maps it back through this order,
 * so a value in (0, 0.0026] becomes FP4 code 8 and 0 itself code 0.
 */
const FP4_ORDER = Uint8Array.from([11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3]);
const NF4_ORDER = Uint8Array.from({ length: 16 }, (_, i) => i);

export interface FourBitBounds {
  /** 15 float32 midpoints between neighbouring sorted codes: `(sorted[i] + sorted[i + 1]) / 2`. */
  bounds: Float32Array;
  /** sorted rank -> 4-bit code. */
  order: Uint8Array;
}

const boundsCache = new Map<FourBitType, FourBitBounds>();

/** The decision bounds of bitsandbytes' 4-bit quantizer (its default backend, which CPU uses). */
export function fourBitBounds(type: FourBitType): FourBitBounds {
  let cached = boundsCache.get(type);
  if (!cached) {
    const code = fourBitCode(type);
    const order = type === 'nf4' ? NF4_ORDER : FP4_ORDER;
    const bounds = new Float32Array(15);
    for (let i = 0; i < 15; i++) bounds[i] = Math.fround(Math.fround(code[order[i]] + code[order[i + 1]]) / 2);
    cached = { bounds, order };
    boundsCache.set(type, cached);
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------------
// The dynamic 8-bit table (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8))

/**
 * torch.linspace(start, end, steps) in float32 on CPU: the first half as start + step * i, the second as
 * end - step * (steps - 1 - i), each a fused multiply-add (torch's kernel is compiled with contraction; the
 * operands are small enough that the exact double result rounded once equals the FMA).
 */
function linspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const s = Math.fround(start);
  const e = Math.fround(end);
  const step = Math.fround(Math.fround(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out = new Float32Array(steps);
  for (let i = 0; i < steps; i++) {
    out[i] = i < half ? Math.fround(s + step * i) : Math.fround(e - step * (steps - 1 - i));
  }
  return out;
}

let dynamicCache: Float32Array | undefined;

/**
 * bitsandbytes' signed dynamic-exponent table (256 sorted float32 values in [-1, 1]): for i = 0..6, the
 * 2^i midpoints of linspace(0.1, 1, 2^i + 1) scaled by 10^(i-6), both signs, then 0 and 1.
 */
export function dynamicCode(): Float32Array {
  if (!dynamicCache) {
    const values: number[] = [];
    for (let i = 0; i < 7; i++) {
      const bounds = linspaceFloat32(0.1, 1, 2 ** i + 1);
      const scale = Math.fround([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1][i]);
      for (let k = 0; k + 1 < bounds.length; k++) {
        const mean = Math.fround(Math.fround(bounds[k] + bounds[k + 1]) / 2);
        values.push(Math.fround(scale * mean), Math.fround(-scale * mean));
      }
    }
    values.push(0, 1);
    dynamicCache = Float32Array.from(values.sort((a, b) => a - b));
  }
  return dynamicCache;
}
