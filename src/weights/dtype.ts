/**
 * Element types of the safetensors format: byte sizes, decoders to the two tfjs dtypes (float32,
 * int32) and float32 -> float16 / bfloat16 encoders for writing. All data is little-endian.
 *
 * Decoding is exact wherever float32 / int32 can hold the value: F16, BF16 and both F8 formats widen
 * without rounding; F64 rounds to nearest-even (as torch's `.float()` does); 64-bit and unsigned 32-bit
 * integers are range-checked instead of wrapped.
 */
import { SafetensorsError } from '../errors';
import { FORMAT_CODES } from '../native/codes';
import { platform } from '../platform';

/** The dtype strings a safetensors header may hold, with their sizes in bytes. */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;

export type DType = keyof typeof DTYPE_SIZES;

export const DTYPES = Object.keys(DTYPE_SIZES) as DType[];

const FLOAT_DTYPES: ReadonlySet<DType> = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

/**
 * Whether x is a typed array of that kind, from any realm: arrays a native backend (tfjs-node) or another
 * vm context (jest) creates fail `instanceof` against this realm's constructors.
 */
export function isTypedArray(x: unknown, kind: 'Float32Array' | 'Int32Array'): boolean {
  return Object.prototype.toString.call(x) === `[object ${kind}]`;
}

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

export function isFloatDType(dtype: DType): boolean {
  return FLOAT_DTYPES.has(dtype);
}

export function dtypeSize(dtype: DType): number {
  return DTYPE_SIZES[dtype];
}

/** Where decoded bytes came from, so that errors can name the file and tensor. */
export interface TensorRef {
  file: string;
  tensor: string;
}

const UNNAMED: TensorRef = { file: '<buffer>', tensor: '<unnamed>' };

/** A tensor's bytes as 16-bit words (BF16 / F16 bits), without a copy where they are aligned. */
export function uint16Words(bytes: Uint8Array, ref: TensorRef = UNNAMED): Uint16Array {
  return viewAs(bytes, Uint16Array, ref);
}

// ---------------------------------------------------------------------------------------------------
// Typed views over raw bytes

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface TypedArrayCtor<T> {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  BYTES_PER_ELEMENT: number;
}

/** A view of `bytes` as elements of `ctor`; copies only when the bytes are not aligned for it. */
function viewAs<T>(bytes: Uint8Array, ctor: TypedArrayCtor<T>, ref: TensorRef): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (!HOST_IS_LITTLE_ENDIAN && size > 1) {
    throw new SafetensorsError(ref.file, 'decoding needs a little-endian host', ref.tensor);
  }
  if (bytes.byteLength % size !== 0) {
    throw new SafetensorsError(ref.file, `byte length ${bytes.byteLength} is not a multiple of ${size}`, ref.tensor);
  }
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return new ctor(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / size);
}

// ---------------------------------------------------------------------------------------------------
// Float decoders. They copy bit patterns through Uint32Array so that NaN payloads survive.

/** float16 bits -> float32 bits, exact: subnormals become normals, inf/NaN keep sign and payload. */
function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 -> 127
  if (mant === 0) return sign >>> 0;
  // Subnormal: value = mant * 2^-24. Normalise so the leading 1 sits at bit 10.
  let e = 113;
  let m = mant;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let halfTable: Uint32Array | undefined;

/** 65536-entry float16 -> float32 bit table, built on first use (256 KiB). */
function halfToFloatTable(): Uint32Array {
  if (!halfTable) {
    halfTable = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloatBits(h);
  }
  return halfTable;
}

export function decodeFloat16(bytes: Uint8Array, ref: TensorRef = UNNAMED): Float32Array {
  const src = viewAs(bytes, Uint16Array, ref);
  const table = halfToFloatTable();
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return new Float32Array(out.buffer);
}

/** Below this many values widening stays in TypeScript (a native call costs more than the loop). */
const NATIVE_WIDEN_MIN = 1 << 16;

/** bfloat16 is the top half of a float32, so widening is a shift (on the native addon where it is built: ~20x). */
export function decodeBFloat16(bytes: Uint8Array, ref: TensorRef = UNNAMED): Float32Array {
  const src = viewAs(bytes, Uint16Array, ref);
  const addon = src.length >= NATIVE_WIDEN_MIN ? platform.nativeAddon() : null;
  if (addon) {
    const out = new Float32Array(src.length);
    addon.widenRows(FORMAT_CODES.bfloat16, src, src.length, 0, 1, out);
    return out;
  }
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/** float64 -> float32, rounding to nearest-even (the typed-array store does exactly that). */
export function decodeFloat64(bytes: Uint8Array, ref: TensorRef = UNNAMED): Float32Array {
  return Float32Array.from(viewAs(bytes, Float64Array, ref));
}

/** A view of the same memory when `bytes` is 4-byte aligned (no copy of large F32 weights). */
export function decodeFloat32(bytes: Uint8Array, ref: TensorRef = UNNAMED): Float32Array {
  return viewAs(bytes, Float32Array, ref);
}

/** float8 e5m2 has float16's layout with the low mantissa byte dropped. */
export function decodeFloat8E5M2(bytes: Uint8Array): Float32Array {
  const table = halfToFloatTable();
  const out = new Uint32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i] << 8];
  return new Float32Array(out.buffer);
}

/** float8 e4m3 "fn" (torch.float8_e4m3fn): bias 7, no infinities, S.1111.111 is NaN. */
function e4m3ToFloatBits(b: number): number {
  const sign = (b & 0x80) << 24;
  const exp = (b >> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 0xf && mant === 0x7) return (sign | 0x7fc00000) >>> 0;
  if (exp !== 0) return (sign | ((exp + 120) << 23) | (mant << 20)) >>> 0; // rebias 7 -> 127
  if (mant === 0) return sign >>> 0;
  // Subnormal: value = mant * 2^-9, exact in float32.
  return (new Uint32Array(new Float32Array([mant * 2 ** -9]).buffer)[0] | sign) >>> 0;
}

let e4m3Table: Uint32Array | undefined;

export function decodeFloat8E4M3(bytes: Uint8Array): Float32Array {
  if (!e4m3Table) {
    e4m3Table = new Uint32Array(256);
    for (let b = 0; b < 256; b++) e4m3Table[b] = e4m3ToFloatBits(b);
  }
  const table = e4m3Table;
  const out = new Uint32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]];
  return new Float32Array(out.buffer);
}

/**
 * Decodes a float dtype to float32. Integer dtypes are refused: use `decodeInt32`. For F32 the result
 * may share memory with `bytes`.
 */
export function decodeFloat(dtype: DType, bytes: Uint8Array, ref: TensorRef = UNNAMED): Float32Array {
  switch (dtype) {
    case 'F32':
      return decodeFloat32(bytes, ref);
    case 'F16':
      return decodeFloat16(bytes, ref);
    case 'BF16':
      return decodeBFloat16(bytes, ref);
    case 'F64':
      return decodeFloat64(bytes, ref);
    case 'F8_E4M3':
      return decodeFloat8E4M3(bytes);
    case 'F8_E5M2':
      return decodeFloat8E5M2(bytes);
    default:
      throw new SafetensorsError(ref.file, `dtype ${dtype} is not a float type; read it as int32`, ref.tensor);
  }
}

// ---------------------------------------------------------------------------------------------------
// Integer decoders

function outOfRange(ref: TensorRef, dtype: DType, index: number, value: bigint): SafetensorsError {
  return new SafetensorsError(
    ref.file,
    `${dtype} element ${index} is ${value}, outside the int32 range [-2147483648, 2147483647]`,
    ref.tensor,
  );
}

/** I64 -> int32: a value fits when its high word is the sign extension of its low word. */
function decodeI64(bytes: Uint8Array, ref: TensorRef): Int32Array {
  const words = viewAs(bytes, Int32Array, ref); // [lo, hi] pairs
  const out = new Int32Array(words.length / 2);
  for (let i = 0; i < out.length; i++) {
    const lo = words[2 * i];
    if (words[2 * i + 1] !== lo >> 31) throw outOfRange(ref, 'I64', i, viewAs(bytes, BigInt64Array, ref)[i]);
    out[i] = lo;
  }
  return out;
}

function decodeU64(bytes: Uint8Array, ref: TensorRef): Int32Array {
  const words = viewAs(bytes, Int32Array, ref); // [lo, hi] pairs
  const out = new Int32Array(words.length / 2);
  for (let i = 0; i < out.length; i++) {
    const lo = words[2 * i];
    if (words[2 * i + 1] !== 0 || lo < 0) throw outOfRange(ref, 'U64', i, viewAs(bytes, BigUint64Array, ref)[i]);
    out[i] = lo;
  }
  return out;
}

function decodeU32(bytes: Uint8Array, ref: TensorRef): Int32Array {
  const src = viewAs(bytes, Uint32Array, ref);
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    if (src[i] > 0x7fffffff) throw outOfRange(ref, 'U32', i, BigInt(src[i]));
    out[i] = src[i];
  }
  return out;
}

/**
 * Decodes an integer or BOOL dtype to int32, throwing when a value does not fit. For I32 the result may
 * share memory with `bytes`.
 */
export function decodeInt32(dtype: DType, bytes: Uint8Array, ref: TensorRef = UNNAMED): Int32Array {
  switch (dtype) {
    case 'I32':
      return viewAs(bytes, Int32Array, ref);
    case 'I64':
      return decodeI64(bytes, ref);
    case 'U64':
      return decodeU64(bytes, ref);
    case 'U32':
      return decodeU32(bytes, ref);
    case 'I16':
      return Int32Array.from(viewAs(bytes, Int16Array, ref));
    case 'U16':
      return Int32Array.from(viewAs(bytes, Uint16Array, ref));
    case 'I8':
      return Int32Array.from(viewAs(bytes, Int8Array, ref));
    case 'U8':
      return Int32Array.from(bytes);
    case 'BOOL':
      return Int32Array.from(bytes, (b) => (b !== 0 ? 1 : 0));
    default:
      throw new SafetensorsError(ref.file, `dtype ${dtype} is a float type; read it as float32`, ref.tensor);
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoders (float32 -> 16-bit), round to nearest, ties to even

function floatBits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Rounds `m >> shift` to nearest, ties to even (shift >= 1). */
function roundShift(m: number, shift: number): number {
  const kept = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

function floatBitsToHalf(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (e > 0) return sign | ((e << 10) + roundShift(mant, 13));
  // Subnormal half (or zero): value / 2^-24 = (1.mant) * 2^(e-14+23) in units of the mantissa LSB.
  if (e < -10) return sign;
  return sign | roundShift(mant | 0x800000, 14 - e);
}

export function encodeFloat16(values: Float32Array): Uint16Array {
  const bits = floatBits(values);
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = floatBitsToHalf(bits[i]);
  return out;
}

export function encodeBFloat16(values: Float32Array): Uint16Array {
  const bits = floatBits(values);
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const isNaN = (b & 0x7fffffff) > 0x7f800000;
    // Adding 0x7fff plus the kept LSB rounds to nearest-even; NaN is kept quiet instead.
    out[i] = isNaN ? ((b >>> 16) | 0x0040) : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}
