/**
 * bitsandbytes' blockwise 8-bit quantization (`quantize_blockwise` / `dequantize_blockwise`), as its CPU
 * library computes it for float32 input. Double quantization stores the 4-bit block scales this way.
 *
 * The CPU quantizer does not search the code table per value: it maps value / absmax in [-1, 1] onto
 * 65536 evenly spaced bins and reads the code of each bin from a table built once per code (bin i holds
 * the first code whose midpoint to the next is not below -1 + 2i/65535). Near a midpoint this can pick a
 * different code than the exact nearest one; it is reproduced here as is.
 */

// Math functions bound once: in hot loops a global `Math.` lookup is slow in some hosts (jest's vm contexts: ~50x).
const { abs, ceil, floor, fround, max, min, trunc } = Math;

const LUT_SIZE = 65536;
const lutCache = new WeakMap<Float32Array, Uint8Array>();

function binTable(code: Float32Array): Uint8Array {
  let lut = lutCache.get(code);
  if (lut) return lut;
  const mid = new Float32Array(code.length - 1);
  for (let i = 0; i + 1 < code.length; i++) mid[i] = fround(0.5 * fround(code[i] + code[i + 1]));
  lut = new Uint8Array(LUT_SIZE);
  let c = 0;
  for (let i = 0; i < LUT_SIZE; i++) {
    const val = fround(-1 + fround(fround(2 * i) / (LUT_SIZE - 1)));
    while (c < mid.length && mid[c] < val) c++;
    lut[i] = c;
  }
  lutCache.set(code, lut);
  return lut;
}

/** The bin of a scaled value: ((v + 1) / 2) * 65535 + 0.5, truncated (float32 steps as in the C code). */
function binOf(scaled: number): number {
  const v = scaled < -1 ? -1 : scaled > 1 ? 1 : scaled;
  const half = fround(fround(v + 1) * 0.5);
  return trunc(fround(fround(half * (LUT_SIZE - 1)) + 0.5));
}

export interface Blockwise8 {
  /** One code index per value. */
  codes: Uint8Array;
  /** One float32 scale per block of `blockSize` values (the last block may be partial). */
  absmax: Float32Array;
}

/** quantize_blockwise(values, code, blocksize) on CPU for float32 values (a code table of 256 sorted entries). */
export function quantizeBlockwise8(values: Float32Array, code: Float32Array, blockSize: number): Blockwise8 {
  const lut = binTable(code);
  const n = values.length;
  const blocks = ceil(n / blockSize);
  const codes = new Uint8Array(n);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize;
    const end = min(start + blockSize, n);
    let m = 0;
    for (let i = start; i < end; i++) m = max(m, abs(values[i]));
    absmax[b] = m;
    if (m === 0) continue; // the C code writes code 0 for an all-zero block
    const inv = fround(1 / m);
    for (let i = start; i < end; i++) codes[i] = lut[binOf(fround(values[i] * inv))];
  }
  return { codes, absmax };
}

/** dequantize_blockwise to float32: code[codes[i]] * absmax[block of i], one float32 product per value. */
export function dequantizeBlockwise8(
  codes: Uint8Array,
  absmax: Float32Array,
  code: Float32Array,
  blockSize: number,
): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = code[codes[i]] * absmax[floor(i / blockSize)];
  return out;
}
