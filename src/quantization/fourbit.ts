/**
 * bitsandbytes' 4-bit format (NF4 / FP4, blockwise absmax, optional double quantization of the absmax),
 * bit-identical to `bitsandbytes.functional.quantize_4bit` on CPU (bitsandbytes 0.50.2, torch 2.15) and
 * dequantized as `dequantize_4bit` defines it.
 *
 * Layout: the weight is flattened row-major and cut into blocks of `blockSize` values (the last block may
 * be partial, blocks run across rows). Each value becomes a 4-bit code: the nearest table entry to
 * value / absmax(block); two codes share a byte, the first in the high nibble. With double quantization
 * the float32 block scales are themselves stored as 8-bit codes (blockwise8.ts) around their mean.
 */
import { QuantizationError } from '../errors';
import { platform } from '../platform';
import { dequantizeBlockwise8, quantizeBlockwise8 } from './blockwise8';
import { FOUR_BIT_TYPES, FourBitType, dynamicCode, fourBitBounds, fourBitCode } from './codes';
import { torchMeanFloat32 } from './torch_sum';
import { WeightDtype, checkRepresentable, elementCount, roundToDtype, WEIGHT_DTYPES } from './weight_dtype';
import { decodeBFloat16 } from '../weights/dtype';

// Math functions bound once: in hot loops a global `Math.` lookup is slow in some hosts (jest's vm contexts: ~50x).
const { abs, ceil, floor, fround, max, min } = Math;
const { isFinite } = Number;

/** The block sizes bitsandbytes accepts for 4-bit quantization (all of them run on CPU). */
export const FOUR_BIT_BLOCK_SIZES: readonly number[] = [32, 64, 128, 256, 512, 1024, 2048, 4096];
/** Block size of the double quantization of the absmax (fixed by bitsandbytes). */
export const NESTED_BLOCK_SIZE = 256;

/** The double-quantized block scales: absmax[b] = nested.code[codes[b]] * nested.absmax[b / 256] + offset. */
export interface NestedAbsmax {
  /** float32 mean of the plain block scales, subtracted before they were quantized (`nested_offset`). */
  offset: number;
  /** One float32 scale per 256 block scales (`nested_absmax`). */
  absmax: Float32Array;
  /** The 256-entry table of the codes (`nested_quant_map`, bitsandbytes' dynamic map). */
  code: Float32Array;
  /** Always 256 when bitsandbytes wrote it (`nested_blocksize`). */
  blockSize: number;
  /** `nested_dtype`: the block scales are float32. */
  dtype: 'float32';
}

interface FourBitCommon {
  quantType: FourBitType;
  blockSize: number;
  /** Shape of the original weight, e.g. [outFeatures, inFeatures]. */
  shape: number[];
  /** dtype of the original weight; dequantization rounds to it. */
  dtype: WeightDtype;
  /** ceil(n / 2) bytes; value 2i in the high nibble and 2i + 1 in the low nibble of byte i. */
  packed: Uint8Array;
  /**
   * `quant_map`: the 16-entry table as stored. Dequantization uses the table of `quantType`, as
   * bitsandbytes does; a checkpoint always stores that same table.
   */
  code: Float32Array;
}

/** Block scales stored as float32 (`bnb_4bit_use_double_quant: false`). */
export interface PlainFourBitState extends FourBitCommon {
  nested: null;
  /** One float32 scale per block (`weight.absmax`). */
  absmax: Float32Array;
}

/** Block scales stored as 8-bit codes (`bnb_4bit_use_double_quant: true`). */
export interface NestedFourBitState extends FourBitCommon {
  nested: NestedAbsmax;
  /** One 8-bit code per block (`weight.absmax`, uint8). */
  absmax: Uint8Array;
}

/** bitsandbytes' QuantState of a 4-bit weight, as plain data. */
export type FourBitState = PlainFourBitState | NestedFourBitState;

export interface Quantize4bitOptions {
  /** 'nf4' or 'fp4'. Default 'fp4', as in bitsandbytes. */
  quantType?: FourBitType;
  /** Default 64. */
  blockSize?: number;
  /** Quantize the block scales too (`compress_statistics`). Default false. */
  doubleQuant?: boolean;
  /** dtype the values were read from (they must be representable in it). Default 'float32'. */
  dtype?: WeightDtype;
  /** Tensor name for errors. */
  name?: string;
  /** Vector width of the torch sum kernel whose mean() double quantization mirrors (default 8, see torch_sum.ts). */
  sumLanes?: number;
}

/** float32(1e-38): the floor bitsandbytes clamps a block scale to before dividing by it. */
const TINY = fround(1e-38);

/**
 * The code of a scaled value: its rank among the 15 sorted bounds (the number strictly below it, as
 * torch.bucketize(right=False) counts), mapped through the sorted order. Four comparisons (15 = 2^4 - 1).
 */
function codeOf(b: readonly number[], order: Uint8Array, s: number): number {
  let r = b[7] < s ? 8 : 0;
  if (b[r + 3] < s) r += 4;
  if (b[r + 1] < s) r += 2;
  if (b[r] < s) r += 1;
  return order[r];
}

/** Codes of values [start, end) (weight[i - base]): full blocks multiply by the float32 reciprocal, the partial block divides. */
function quantizeBlock(
  weight: Float32Array,
  base: number,
  start: number,
  end: number,
  scale: number,
  divide: boolean,
  b: readonly number[],
  order: Uint8Array,
  packed: Uint8Array,
): void {
  for (let i = start; i < end; i++) {
    const v = weight[i - base];
    let s = divide ? fround(v / scale) : fround(v * scale);
    s = s < -1 ? -1 : s > 1 ? 1 : s;
    const q = codeOf(b, order, s);
    packed[i >> 1] |= (i & 1) === 0 ? q << 4 : q;
  }
}

/**
 * quantize_4bit(weight, blocksize, compress_statistics, quant_type) on CPU. Full blocks scale by the
 * float32 reciprocal of their absmax, the partial last block divides by its absmax (clamped to 1e-38), as
 * bitsandbytes' default backend does; an odd count pads one zero before packing.
 */
export function quantize4bit(weight: Float32Array, shape: readonly number[], opts: Quantize4bitOptions = {}): FourBitState {
  const q = start4bit(weight.length, shape, opts);
  checkRepresentable(weight, q.dtype, q.name);
  // Whole blocks on the native addon where it is built (the same float32 operations, ~50x faster); the rest here.
  const addon = platform.nativeAddon();
  const nativeBlocks = addon && q.blockSize % 2 === 0 ? floor(q.n / q.blockSize) : 0;
  if (nativeBlocks > 0) addon!.quantize4bit(weight, nativeBlocks, q.blockSize, q.bounds, q.order, q.absmax, q.packed);
  return finish4bit(q, nativeBlocks, weight, 0, opts);
}

/**
 * quantize4bit of a bfloat16 weight given as its bits (a checkpoint's BF16 tensor): on the addon the whole blocks
 * are widened a block at a time as they are quantized, never as a whole float32 copy (most of a 7B's load time was
 * that copy); the same bytes as quantize4bit of the widened values, and the same error for a value that is not finite.
 */
export function quantize4bitBFloat16(bits: Uint16Array, shape: readonly number[], opts: Omit<Quantize4bitOptions, 'dtype'> = {}): FourBitState {
  const addon = platform.nativeAddon();
  const widen = (from: number, to = bits.length) => decodeBFloat16(new Uint8Array(bits.buffer, bits.byteOffset + 2 * from, 2 * (to - from)));
  if (!addon || (opts.blockSize ?? 64) % 2 !== 0) return quantize4bit(widen(0), shape, { ...opts, dtype: 'bfloat16' });
  const q = start4bit(bits.length, shape, { ...opts, dtype: 'bfloat16' });
  const notFinite = (i: number): never => {
    throw new QuantizationError(q.name, `value ${widen(i, i + 1)[0]} at index ${i} is not finite`);
  };
  const nativeBlocks = floor(q.n / q.blockSize);
  if (nativeBlocks > 0) {
    const bad = addon.quantize4bit(bits, nativeBlocks, q.blockSize, q.bounds, q.order, q.absmax, q.packed);
    if (bad >= 0) notFinite(bad);
  }
  const base = nativeBlocks * q.blockSize;
  const rest = widen(base);
  for (let i = 0; i < rest.length; i++) if (!isFinite(rest[i])) notFinite(base + i);
  return finish4bit(q, nativeBlocks, rest, base, opts);
}

interface FourBitRun {
  name: string;
  quantType: FourBitType;
  blockSize: number;
  dtype: WeightDtype;
  n: number;
  shape: readonly number[];
  bounds: Float32Array;
  order: Uint8Array;
  absmax: Float32Array;
  packed: Uint8Array;
}

/** Options and sizes checked, outputs allocated. */
function start4bit(length: number, shape: readonly number[], opts: Quantize4bitOptions): FourBitRun {
  const name = opts.name ?? '<weight>';
  const quantType = opts.quantType ?? 'fp4';
  const blockSize = opts.blockSize ?? 64;
  const dtype = opts.dtype ?? 'float32';
  checkOptions(name, quantType, blockSize, dtype);
  const n = elementCount(shape, name);
  if (n === 0) throw new QuantizationError(name, 'cannot quantize an empty weight');
  if (length !== n) {
    throw new QuantizationError(name, `has ${length} values but shape [${shape.join(', ')}] needs ${n}`);
  }
  const { bounds, order } = fourBitBounds(quantType);
  const blocks = ceil(n / blockSize);
  return { name, quantType, blockSize, dtype, n, shape, bounds, order, absmax: new Float32Array(blocks), packed: new Uint8Array(ceil(n / 2)) };
}

/** Blocks from `firstBlock` on here (values[i - base] is value i), the odd-count padding, double quantization. */
function finish4bit(q: FourBitRun, firstBlock: number, values: Float32Array, base: number, opts: Quantize4bitOptions): FourBitState {
  const { n, blockSize, absmax, packed, order } = q;
  const sortedBounds = Array.from(q.bounds);
  const blocks = absmax.length;
  const partial = n % blockSize !== 0;
  for (let b = firstBlock; b < blocks; b++) {
    const start = b * blockSize;
    const end = min(start + blockSize, n);
    let m = 0;
    for (let i = start; i < end; i++) m = max(m, abs(values[i - base]));
    const isPartial = partial && b === blocks - 1;
    const clamped = max(m, TINY);
    absmax[b] = isPartial ? clamped : m;
    quantizeBlock(values, base, start, end, isPartial ? clamped : fround(1 / clamped), isPartial, sortedBounds, order, packed);
  }
  if (n % 2 === 1) packed[packed.length - 1] |= codeOf(sortedBounds, order, 0);

  const common = { quantType: q.quantType, blockSize, shape: [...q.shape], dtype: q.dtype, packed, code: fourBitCode(q.quantType).slice() };
  if (!opts.doubleQuant) return { ...common, nested: null, absmax };
  return { ...common, ...doubleQuantize(absmax, opts.sumLanes) };
}

/** quantize_blockwise(absmax - absmax.mean(), blocksize=256) with the dynamic table. */
function doubleQuantize(absmax: Float32Array, sumLanes?: number): { nested: NestedAbsmax; absmax: Uint8Array } {
  const offset = torchMeanFloat32(absmax, sumLanes);
  const shifted = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) shifted[i] = absmax[i] - offset;
  const code = dynamicCode();
  const q = quantizeBlockwise8(shifted, code, NESTED_BLOCK_SIZE);
  return {
    absmax: q.codes,
    nested: { offset, absmax: q.absmax, code: code.slice(), blockSize: NESTED_BLOCK_SIZE, dtype: 'float32' },
  };
}

function checkOptions(name: string, quantType: string, blockSize: number, dtype: string): void {
  if (!(FOUR_BIT_TYPES as readonly string[]).includes(quantType)) {
    throw new QuantizationError(name, `unknown 4-bit quant type ${JSON.stringify(quantType)}: expected nf4 or fp4`);
  }
  if (!FOUR_BIT_BLOCK_SIZES.includes(blockSize)) {
    throw new QuantizationError(name, `block size ${blockSize} is not one of ${FOUR_BIT_BLOCK_SIZES.join(', ')}`);
  }
  if (!(WEIGHT_DTYPES as readonly string[]).includes(dtype)) {
    throw new QuantizationError(name, `dtype ${JSON.stringify(dtype)} is not one of ${WEIGHT_DTYPES.join(', ')}`);
  }
}

/** Throws a QuantizationError naming `name` unless every size in the state agrees with its shape. */
export function checkFourBitState(state: FourBitState, name = '<weight>'): void {
  checkOptions(name, state.quantType, state.blockSize, state.dtype);
  const n = elementCount(state.shape, name);
  const blocks = ceil(n / state.blockSize);
  const expect = (what: string, found: number, wanted: number): void => {
    if (found !== wanted) {
      throw new QuantizationError(
        name,
        `${what} has ${found} entries but shape [${state.shape.join(', ')}] with block size ${state.blockSize} needs ${wanted}`,
      );
    }
  };
  expect('packed weight', state.packed.length, ceil(n / 2));
  expect('absmax', state.absmax.length, blocks);
  expect('quant_map', state.code.length, 16);
  if (state.nested) {
    if (state.nested.blockSize <= 0 || !Number.isInteger(state.nested.blockSize)) {
      throw new QuantizationError(name, `nested block size ${state.nested.blockSize} is not a positive integer`);
    }
    expect('nested_absmax', state.nested.absmax.length, ceil(blocks / state.nested.blockSize));
    expect('nested_quant_map', state.nested.code.length, 256);
    if (!isFinite(state.nested.offset)) {
      throw new QuantizationError(name, `nested_offset ${state.nested.offset} is not a finite number`);
    }
  }
}

/**
 * The float32 scale of every block. With double quantization: dequantize_blockwise of the codes
 * (code[c] * nested absmax, float32) plus the offset, in float32, as bitsandbytes reconstructs them.
 */
export function blockScales(state: FourBitState): Float32Array {
  if (state.nested === null) return state.absmax;
  const { code, absmax, blockSize, offset } = state.nested;
  const scales = dequantizeBlockwise8(state.absmax, absmax, code, blockSize);
  for (let i = 0; i < scales.length; i++) scales[i] += offset;
  return scales;
}

/** dequantize_4bit: every value is table[code] * scale(block) in float32, then rounded to the state's dtype. */
export function dequantize4bit(state: FourBitState, name?: string): Float32Array {
  const rows = state.shape.length === 0 ? 1 : state.shape[0];
  return dequantize4bitRows(state, 0, rows, undefined, name);
}

/**
 * Rows [rowStart, rowEnd) of the dequantized weight (rows along shape[0]), e.g. one panel of a matmul.
 * `scales` (blockScales(state)) may be passed in to avoid rebuilding double-quantized scales per panel.
 */
export function dequantize4bitRows(
  state: FourBitState,
  rowStart: number,
  rowEnd: number,
  scales: Float32Array = blockScales(state),
  name = '<weight>',
): Float32Array {
  checkFourBitState(state, name);
  const rows = state.shape.length === 0 ? 1 : state.shape[0];
  if (!Number.isInteger(rowStart) || !Number.isInteger(rowEnd) || rowStart < 0 || rowEnd > rows || rowStart > rowEnd) {
    throw new QuantizationError(name, `rows [${rowStart}, ${rowEnd}) are outside the ${rows} rows of the weight`);
  }
  if (scales.length !== state.absmax.length) {
    throw new QuantizationError(name, `${scales.length} block scales given for ${state.absmax.length} blocks`);
  }
  const rowLength = rows === 0 ? 0 : elementCount(state.shape, name) / rows;
  const table = fourBitCode(state.quantType);
  const { packed, blockSize } = state;
  const first = rowStart * rowLength;
  const out = new Float32Array((rowEnd - rowStart) * rowLength);
  for (let j = 0; j < out.length; j++) {
    const i = first + j;
    const byte = packed[i >> 1];
    const q = (i & 1) === 0 ? byte >> 4 : byte & 0x0f;
    out[j] = table[q] * scales[floor(i / blockSize)];
  }
  return roundToDtype(out, state.dtype);
}
