/**
 * bitsandbytes' 8-bit weight format (LLM.int8(), `Int8Params` / `Linear8bitLt`): an int8 matrix with one
 * float32 scale per output row (`SCB`, the row's absmax), quantized bit-identically to bitsandbytes 0.50.2:
 * the weight is first rounded to float16, then each value becomes round(value * (1 / absmax) * 127) with
 * float32 arithmetic and ties to even. A row of zeros stores zeros and a scale of 0.
 */
import { QuantizationError } from '../errors';
import { platform } from '../platform';
import { WeightDtype, checkRepresentable, elementCount, roundToDtype } from './weight_dtype';
import { decodeBFloat16 } from '../weights/dtype';

// Math functions bound once: in hot loops a global `Math.` lookup is slow in some hosts (jest's vm contexts: ~50x).
const { abs, fround, max, round } = Math;
const { isFinite } = Number;

export interface Int8State {
  /** [rows, cols] row-major int8 codes (`weight`, I8). */
  weight: Int8Array;
  /** One float32 absmax per row (`SCB`). */
  scb: Float32Array;
  /** [outFeatures, inFeatures]. */
  shape: [number, number];
}

export interface QuantizeInt8Options {
  /** dtype the values were read from (they must be representable in it). Default 'float32'. */
  dtype?: WeightDtype;
  /** Tensor name for errors. */
  name?: string;
}

/** 1/127 as bitsandbytes writes it (a float32 multiplier in its dequantization). */
const INV_127 = fround(7.874015718698502e-3);

/** torch.round: nearest integer, ties to even. */
function roundHalfEven(x: number): number {
  const r = round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** [rows, cols] of a 2-D shape that `length` values fill. */
function checkSize(shape: readonly number[], length: number, name: string): [number, number] {
  const [rows, cols] = checkShape(shape, name);
  if (length !== rows * cols) throw new QuantizationError(name, `has ${length} values but shape [${rows}, ${cols}] needs ${rows * cols}`);
  return [rows, cols];
}

function checkShape(shape: readonly number[], name: string): [number, number] {
  if (shape.length !== 2) {
    throw new QuantizationError(name, `8-bit quantization needs a 2-D weight, found shape [${shape.join(', ')}]`);
  }
  elementCount(shape, name);
  return [shape[0], shape[1]];
}

/** Int8Params._quantize on CPU: float16 rounding, then int8_vectorwise_quant row by row. */
export function quantizeInt8(weight: Float32Array, shape: readonly number[], opts: QuantizeInt8Options = {}): Int8State {
  const name = opts.name ?? '<weight>';
  const [rows, cols] = checkSize(shape, weight.length, name);
  checkRepresentable(weight, opts.dtype ?? 'float32', name);
  const codes = new Int8Array(rows * cols);
  const scb = new Float32Array(rows);
  // On the native addon where it is built (the same float32 operations, ~50x faster; tests compare the two).
  const addon = platform.nativeAddon();
  if (addon) {
    const [, overflow] = addon.quantizeInt8(weight, rows, cols, codes, scb);
    if (overflow >= 0) throw float16Overflow(name, weight[overflow], overflow);
    return { weight: codes, scb, shape: [rows, cols] };
  }
  const half = roundToDtype(weight, 'float16');
  for (let i = 0; i < half.length; i++) {
    if (!isFinite(half[i])) throw float16Overflow(name, weight[i], i);
  }
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let m = 0;
    for (let c = 0; c < cols; c++) m = max(m, abs(half[base + c]));
    scb[r] = m;
    if (m === 0) continue; // bitsandbytes computes 0 * inf = NaN here, which becomes code 0
    const scale = fround(fround(1 / m) * 127);
    for (let c = 0; c < cols; c++) codes[base + c] = roundHalfEven(fround(half[base + c] * scale));
  }
  return { weight: codes, scb, shape: [rows, cols] };
}

function float16Overflow(name: string, value: number, index: number): QuantizationError {
  return new QuantizationError(name, `value ${value} at index ${index} overflows float16, which 8-bit quantization rounds to first`);
}

/**
 * quantizeInt8 of a bfloat16 weight given as its bits (a checkpoint's BF16 tensor): on the addon each row is widened
 * as it is quantized, never the whole weight as a float32 copy; the same codes, SCB and errors as quantizeInt8 of the
 * widened values.
 */
export function quantizeInt8BFloat16(bits: Uint16Array, shape: readonly number[], opts: Omit<QuantizeInt8Options, 'dtype'> = {}): Int8State {
  const widen = (from = 0, to = bits.length) => decodeBFloat16(new Uint8Array(bits.buffer, bits.byteOffset + 2 * from, 2 * (to - from)));
  const addon = platform.nativeAddon();
  if (!addon) return quantizeInt8(widen(), shape, { ...opts, dtype: 'bfloat16' });
  const name = opts.name ?? '<weight>';
  const [rows, cols] = checkSize(shape, bits.length, name);
  const codes = new Int8Array(rows * cols);
  const scb = new Float32Array(rows);
  const [nonFinite, overflow] = addon.quantizeInt8(bits, rows, cols, codes, scb);
  // as quantizeInt8 checks: a value that is not finite anywhere before an overflow
  if (nonFinite >= 0) throw new QuantizationError(name, `value ${widen(nonFinite, nonFinite + 1)[0]} at index ${nonFinite} is not finite`);
  if (overflow >= 0) throw float16Overflow(name, widen(overflow, overflow + 1)[0], overflow);
  return { weight: codes, scb, shape: [rows, cols] };
}

/** Throws a QuantizationError naming `name` unless the sizes agree with the shape. */
export function checkInt8State(state: Int8State, name = '<weight>'): void {
  const [rows, cols] = checkShape(state.shape, name);
  if (state.weight.length !== rows * cols) {
    throw new QuantizationError(name, `weight has ${state.weight.length} values but shape [${rows}, ${cols}] needs ${rows * cols}`);
  }
  if (state.scb.length !== rows) {
    throw new QuantizationError(name, `SCB has ${state.scb.length} entries but the weight has ${rows} rows`);
  }
}

/** int8_vectorwise_dequant: code * SCB[row] * (1/127), two float32 products. */
export function dequantizeInt8(state: Int8State, name?: string): Float32Array {
  return dequantizeInt8Rows(state, 0, state.shape[0], name);
}

/** Rows [rowStart, rowEnd) of the dequantized weight. */
export function dequantizeInt8Rows(state: Int8State, rowStart: number, rowEnd: number, name = '<weight>'): Float32Array {
  checkInt8State(state, name);
  const [rows, cols] = state.shape;
  if (!Number.isInteger(rowStart) || !Number.isInteger(rowEnd) || rowStart < 0 || rowEnd > rows || rowStart > rowEnd) {
    throw new QuantizationError(name, `rows [${rowStart}, ${rowEnd}) are outside the ${rows} rows of the weight`);
  }
  const out = new Float32Array((rowEnd - rowStart) * cols);
  for (let r = rowStart; r < rowEnd; r++) {
    const s = state.scb[r];
    const src = r * cols;
    const dst = (r - rowStart) * cols;
    for (let c = 0; c < cols; c++) out[dst + c] = fround(state.weight[src + c] * s) * INV_127;
  }
  return out;
}
