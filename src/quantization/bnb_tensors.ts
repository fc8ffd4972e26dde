/**
 * The tensors transformers + bitsandbytes save for one quantized Linear, and back. Names are relative to
 * the module (prefix them with e.g. `language_model.model.layers.0.self_attn.q_proj.`):
 *
 * 4-bit (Linear4bit, QuantState.as_dict(packed=True)):
 *   weight                                   U8 [ceil(n/2), 1]  packed codes (another quant_storage dtype
 *                                                               reinterprets the same bytes: [bytes/size, 1])
 *   weight.absmax                            F32 [blocks], or U8 [blocks] with double quantization
 *   weight.quant_map                         F32 [16]
 *   weight.nested_absmax                     F32 [ceil(blocks/256)]           (double quantization only)
 *   weight.nested_quant_map                  F32 [256]                        (double quantization only)
 *   weight.quant_state.bitsandbytes__nf4     U8 [len]  json.dumps of {quant_type, blocksize, dtype, shape
 *     (or __fp4)                                       [, nested_blocksize, nested_dtype, nested_offset]}
 * 8-bit (Linear8bitLt):
 *   weight                                   I8 [out, in]
 *   SCB                                      F32 [out]
 *   weight_format                            U8 []  0 = row-major (the only layout bitsandbytes still writes)
 */
import { QuantizationError } from '../errors';
import { DType, decodeFloat32, dtypeSize } from '../weights/dtype';
import { FOUR_BIT_TYPES, FourBitType } from './codes';
import { FOUR_BIT_BLOCK_SIZES, FourBitState, NestedAbsmax, checkFourBitState } from './fourbit';
import { Int8State, checkInt8State } from './int8';
import { PyValue, pythonJsonDumps } from './python_json';
import { WEIGHT_DTYPES, WeightDtype, elementCount } from './weight_dtype';

/** One tensor as stored: dtype, shape and little-endian bytes. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** Where a module's tensors come from, for error messages. */
export interface TensorSource {
  /** Module path or checkpoint prefix, without the trailing dot. */
  module: string;
  file?: string;
}

/** `bnb_4bit_quant_storage`: the dtype the packed bytes are saved as. */
export type QuantStorage = 'uint8' | 'int8' | 'float16' | 'bfloat16' | 'float32' | 'float64';

const STORAGE_DTYPES: Record<QuantStorage, DType> = {
  uint8: 'U8', int8: 'I8', float16: 'F16', bfloat16: 'BF16', float32: 'F32', float64: 'F64',
};

export const QUANT_STATE_PREFIX = 'weight.quant_state.bitsandbytes__';

/** Every tensor name (relative to the module) a 4-bit Linear may save, as transformers lists them. */
export const FOUR_BIT_TENSOR_NAMES: readonly string[] = [
  'weight',
  'weight.absmax',
  'weight.quant_map',
  'weight.nested_absmax',
  'weight.nested_quant_map',
  `${QUANT_STATE_PREFIX}nf4`,
  `${QUANT_STATE_PREFIX}fp4`,
];
export const INT8_TENSOR_NAMES: readonly string[] = ['weight', 'SCB', 'weight_format'];

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function raw(dtype: DType, shape: number[], data: ArrayBufferView): RawTensor {
  return { dtype, shape, data: new Uint8Array(bytesOf(data)) };
}

// ---------------------------------------------------------------------------------------------------
// Writing

/** json.dumps of the non-tensor part of a 4-bit QuantState, in the key order bitsandbytes writes. */
export function packQuantState(state: FourBitState): Uint8Array {
  const entries: Array<[string, PyValue]> = [
    ['quant_type', state.quantType],
    ['blocksize', { int: state.blockSize }],
    ['dtype', state.dtype],
    ['shape', state.shape],
  ];
  if (state.nested) {
    entries.push(
      ['nested_blocksize', { int: state.nested.blockSize }],
      ['nested_dtype', state.nested.dtype],
      ['nested_offset', { float: state.nested.offset }],
    );
  }
  return new Uint8Array(Buffer.from(pythonJsonDumps(entries), 'utf8'));
}

/** The tensors bitsandbytes saves for a 4-bit weight, keyed by name relative to the module. */
export function fourBitToTensors(state: FourBitState, storage: QuantStorage = 'uint8', module = '<module>'): Record<string, RawTensor> {
  checkFourBitState(state, `${module}.weight`);
  const dtype = STORAGE_DTYPES[storage];
  if (!dtype) throw new QuantizationError(`${module}.weight`, `unknown quant storage ${JSON.stringify(storage)}`);
  const size = dtypeSize(dtype);
  if (state.packed.length % size !== 0) {
    throw new QuantizationError(`${module}.weight`, `${state.packed.length} packed bytes cannot be stored as ${storage}`);
  }
  const blocks = state.absmax.length;
  const out: Record<string, RawTensor> = {
    weight: raw(dtype, [state.packed.length / size, 1], state.packed),
    'weight.absmax': raw(state.nested ? 'U8' : 'F32', [blocks], state.absmax),
    'weight.quant_map': raw('F32', [16], state.code),
  };
  const json = packQuantState(state);
  out[`${QUANT_STATE_PREFIX}${state.quantType}`] = { dtype: 'U8', shape: [json.length], data: json };
  if (state.nested) {
    out['weight.nested_absmax'] = raw('F32', [state.nested.absmax.length], state.nested.absmax);
    out['weight.nested_quant_map'] = raw('F32', [state.nested.code.length], state.nested.code);
  }
  return out;
}

/** The tensors bitsandbytes saves for an 8-bit Linear (weight, SCB, weight_format = 0). */
export function int8ToTensors(state: Int8State, module = '<module>'): Record<string, RawTensor> {
  checkInt8State(state, `${module}.weight`);
  return {
    weight: raw('I8', [...state.shape], state.weight),
    SCB: raw('F32', [state.scb.length], state.scb),
    weight_format: raw('U8', [], new Uint8Array([0])),
  };
}

// ---------------------------------------------------------------------------------------------------
// Reading

class Reader {
  constructor(
    private readonly tensors: Readonly<Record<string, RawTensor>>,
    private readonly src: TensorSource,
  ) {}

  name(key: string): string {
    return `${this.src.module}.${key}`;
  }

  fail(key: string, message: string): never {
    throw new QuantizationError(this.name(key), message, this.src.file);
  }

  get(key: string): RawTensor | undefined {
    return this.tensors[key];
  }

  need(key: string, dtypes: readonly DType[], shape?: number[]): RawTensor {
    const t = this.tensors[key];
    if (!t) this.fail(key, 'is missing');
    if (!dtypes.includes(t.dtype)) this.fail(key, `has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.byteLength !== count * dtypeSize(t.dtype)) {
      this.fail(key, `has ${t.data.byteLength} bytes but shape [${t.shape.join(', ')}] of ${t.dtype} needs ${count * dtypeSize(t.dtype)}`);
    }
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      this.fail(key, `has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    return t;
  }

  float32(key: string, length: number): Float32Array {
    const t = this.need(key, ['F32'], [length]);
    return decodeFloat32(t.data, { file: this.src.file ?? '<tensors>', tensor: this.name(key) });
  }
}

interface PackedQuantState {
  quantType: FourBitType;
  blockSize: number;
  dtype: WeightDtype;
  shape: number[];
  nested?: { blockSize: number; dtype: 'float32'; offset: number };
}

function parseQuantStateJson(r: Reader, key: string): PackedQuantState {
  const t = r.need(key, ['U8']);
  if (t.shape.length !== 1) r.fail(key, `must be a 1-D uint8 tensor, found shape [${t.shape.join(', ')}]`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(t.data).toString('utf8'));
  } catch (e) {
    r.fail(key, `does not hold valid JSON: ${(e as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) r.fail(key, 'must hold a JSON object');
  const o = parsed as Record<string, unknown>;
  const field = (f: string, ok: (v: unknown) => boolean, expected: string): unknown => {
    if (!ok(o[f])) r.fail(key, `field "${f}" must be ${expected}, found ${JSON.stringify(o[f]) ?? 'nothing'}`);
    return o[f];
  };
  const isInt = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v);
  const quantType = field('quant_type', (v) => (FOUR_BIT_TYPES as readonly unknown[]).includes(v), 'nf4 or fp4') as FourBitType;
  if (`${QUANT_STATE_PREFIX}${quantType}` !== key) r.fail(key, `holds quant_type "${quantType}", which disagrees with its name`);
  const state: PackedQuantState = {
    quantType,
    blockSize: field('blocksize', (v) => FOUR_BIT_BLOCK_SIZES.includes(v as number), `one of ${FOUR_BIT_BLOCK_SIZES.join(', ')}`) as number,
    dtype: field('dtype', (v) => (WEIGHT_DTYPES as readonly unknown[]).includes(v), WEIGHT_DTYPES.join(', ')) as WeightDtype,
    shape: field('shape', (v) => Array.isArray(v) && v.every((d) => isInt(d) && (d as number) >= 0), 'a list of non-negative integers') as number[],
  };
  if (r.get('weight.nested_absmax')) {
    state.nested = {
      blockSize: field('nested_blocksize', (v) => isInt(v) && (v as number) > 0, 'a positive integer') as number,
      dtype: field('nested_dtype', (v) => v === 'float32', '"float32"') as 'float32',
      offset: field('nested_offset', (v) => typeof v === 'number' && Number.isFinite(v), 'a finite number') as number,
    };
  }
  return state;
}

/** Reads the 4-bit state of one Linear from its saved tensors (names relative to the module). */
export function fourBitFromTensors(tensors: Readonly<Record<string, RawTensor>>, src: TensorSource): FourBitState {
  const r = new Reader(tensors, src);
  const stateKeys = Object.keys(tensors).filter((k) => k.startsWith('weight.quant_state.'));
  if (stateKeys.length !== 1 || !FOUR_BIT_TENSOR_NAMES.includes(stateKeys[0])) {
    r.fail('weight.quant_state', `expected exactly one of ${QUANT_STATE_PREFIX}nf4 / fp4, found ${stateKeys.length ? stateKeys.join(', ') : 'none'}`);
  }
  const packedState = parseQuantStateJson(r, stateKeys[0]);
  const name = r.name('weight');
  const n = elementCount(packedState.shape, name);
  const blocks = Math.ceil(n / packedState.blockSize);
  const w = r.need('weight', Object.values(STORAGE_DTYPES));
  const packed = new Uint8Array(w.data);
  if (packed.length !== Math.ceil(n / 2)) {
    r.fail('weight', `holds ${packed.length} packed bytes but shape [${packedState.shape.join(', ')}] needs ${Math.ceil(n / 2)}`);
  }
  const code = r.float32('weight.quant_map', 16);
  const common = { quantType: packedState.quantType, blockSize: packedState.blockSize, shape: packedState.shape, dtype: packedState.dtype, packed, code };
  let state: FourBitState;
  if (packedState.nested) {
    const nb = packedState.nested.blockSize;
    const nested: NestedAbsmax = {
      offset: Math.fround(packedState.nested.offset),
      absmax: r.float32('weight.nested_absmax', Math.ceil(blocks / nb)),
      code: r.float32('weight.nested_quant_map', 256),
      blockSize: nb,
      dtype: 'float32',
    };
    const absmax = new Uint8Array(r.need('weight.absmax', ['U8'], [blocks]).data);
    state = { ...common, nested, absmax };
  } else {
    if (tensors['weight.nested_quant_map']) r.fail('weight.nested_quant_map', 'is present without weight.nested_absmax');
    state = { ...common, nested: null, absmax: r.float32('weight.absmax', blocks) };
  }
  checkFourBitState(state, name);
  return state;
}

const WEIGHT_FORMATS = ['row', 'col32', 'col_turing', 'col_ampere'];

/** Reads the 8-bit state of one Linear (weight I8 [out, in], SCB F32 [out], optional weight_format). */
export function int8FromTensors(tensors: Readonly<Record<string, RawTensor>>, src: TensorSource): Int8State {
  const r = new Reader(tensors, src);
  const w = r.need('weight', ['I8']);
  if (w.shape.length !== 2) r.fail('weight', `must be 2-D, found shape [${w.shape.join(', ')}]`);
  const [rows, cols] = w.shape;
  const scb = r.float32('SCB', rows);
  const format = r.get('weight_format');
  if (format) {
    const f = r.need('weight_format', ['U8', 'I64', 'I32'], []);
    const value = f.data[0]; // little-endian: the low byte of the integer (all formats are < 256)
    if (f.data.subarray(1).some((b) => b !== 0) || value !== 0) {
      const label = f.data.subarray(1).some((b) => b !== 0) ? 'an out-of-range value' : (WEIGHT_FORMATS[value] ?? `${value}`);
      r.fail('weight_format', `is ${label}; only row-major (0) 8-bit weights are supported`);
    }
  }
  return { weight: new Int8Array(new Uint8Array(w.data).buffer), scb, shape: [rows, cols] };
}

/** Which quantized format a module's saved tensors are in, from their names (relative to the module). */
export function quantizedFormat(names: Iterable<string>): '4bit' | '8bit' | null {
  let format: '4bit' | '8bit' | null = null;
  for (const k of names) {
    if (k.startsWith('weight.quant_state.')) return '4bit';
    if (k === 'SCB') format = '8bit';
  }
  return format;
}
